// The 16-row packed Q4_K / Q6_K kernels (packed_kquant.h): the scalar twin against a
// double-precision dot of the weights as ggml dequantizes them (so the
// layout means what the header says), and every compiled SIMD target
// against the twin bit for bit, for 1-9 vectors and ranges of groups.
#include "kernels/packed_kquant.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/fp16.h"
#include "kernels/ggml_storage.h"
#include "kernels/kquant_dot.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/test_util.h"

namespace st {
namespace {

using ::st::testing::ForEachTarget;
using ::st::testing::Gaussian;

void PutHalf(uint8_t* p, float v) {
  const uint16_t h = F32ToF16(v);
  std::memcpy(p, &h, 2);
}

size_t BlockBytes(uint32_t type) { return type == kGgmlQ4_K ? kQ4_KBlockBytes : kQ6_KBlockBytes; }
const char* Name(uint32_t type) { return type == kGgmlQ4_K ? "Q4_K" : "Q6_K"; }

// Random rows: every byte random (all patterns are valid levels and
// scales), f16 scales of varied size; extreme: every level and scale at
// its largest (Q6_K: scales +127 and -128 alternating).
std::vector<uint8_t> RandomRows(uint32_t type, size_t rows, size_t cols, uint32_t seed,
                                bool extreme = false) {
  std::mt19937 rng(seed);
  const size_t bb = BlockBytes(type);
  std::vector<uint8_t> w(rows * cols / 256 * bb);
  for (uint8_t& b : w) b = extreme ? 0xFF : static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(0.0005f, 0.02f);
  for (size_t b = 0; b < w.size() / bb; ++b) {
    uint8_t* blk = w.data() + b * bb;
    if (type == kGgmlQ4_K) {
      PutHalf(blk, extreme ? 0.02f : scale(rng));
      PutHalf(blk + 2, extreme ? 0.01f : scale(rng));
    } else {
      if (extreme) {
        for (int j = 0; j < 16; ++j) blk[192 + j] = j % 2 == 0 ? 0x7F : 0x80;
      }
      PutHalf(blk + 208, extreme ? 0.02f : scale(rng));
    }
  }
  return w;
}

constexpr uint32_t kTypes[] = {kGgmlQ4_K, kGgmlQ6_K};

TEST(PackedKQuantTest, PackableShapesAreWholeGroupsOfQ4_KOrQ6_K) {
  EXPECT_TRUE(PackableKQuantShape(kGgmlQ4_K, 32, 512));
  EXPECT_TRUE(PackableKQuantShape(kGgmlQ6_K, 32, 512));
  EXPECT_FALSE(PackableKQuantShape(kGgmlQ4_K, 24, 512));
  EXPECT_FALSE(PackableKQuantShape(kGgmlQ6_K, 32, 384));
  EXPECT_FALSE(PackableKQuantShape(kGgmlQ4_K, 0, 512));
  EXPECT_FALSE(PackableKQuantShape(12 + 1, 32, 512));  // Q5_K
  EXPECT_EQ(PackedKQuantGroupBytes(kGgmlQ4_K, 1536), 16u * 6 * kQ4_KBlockBytes);
  EXPECT_EQ(PackedKQuantGroupBytes(kGgmlQ6_K, 1536), 16u * 6 * kQ6_KBlockBytes);
}

TEST(PackedKQuantTest, ScalarTwinMatchesTheDequantizedDot) {
  const size_t rows = 32;
  for (uint32_t type : kTypes) {
    for (size_t cols : {256u, 1536u}) {
      for (bool extreme : {false, true}) {
        SCOPED_TRACE(::testing::Message()
                     << Name(type) << " cols=" << cols << (extreme ? " extreme" : ""));
        const std::vector<uint8_t> w = RandomRows(type, rows, cols, 7 + cols, extreme);
        std::vector<uint8_t> packed(w.size());
        PackKQuantRows(type, w.data(), rows, cols, packed.data());
        const size_t n_vecs = 3;
        std::vector<float> x = Gaussian(n_vecs * cols, 9 + cols, 3.0f);
        Activations act;
        act.Prepare(x.data(), n_vecs, cols, /*need_q8=*/true);
        std::vector<float> y(n_vecs * rows);
        scalar::PackedKQuantMatMulGroups(type, packed.data(), cols, act, 0, n_vecs, 0, rows / 16,
                                         y.data(), rows);
        const size_t row_bytes = cols / 256 * BlockBytes(type);
        for (size_t v = 0; v < n_vecs; ++v) {
          std::vector<float> xd(cols);
          DequantizeRow(DType::kQ8_0, act.q8(v), xd.data(), cols);
          for (size_t r = 0; r < rows; ++r) {
            const uint8_t* row = w.data() + r * row_bytes;
            std::vector<float> wd(cols);
            (type == kGgmlQ4_K ? DequantizeQ4_K : DequantizeQ6_K)(row, wd.data(), cols);
            // Bound as kquant_dot.h's: 1e-6 of sum |w x| plus twice sum
            // |dmin m x| (a block's d * sc * q - dmin * m need not cancel).
            double dot = 0, abs = 0;
            for (size_t j = 0; j < cols; ++j) {
              dot += static_cast<double>(wd[j]) * xd[j];
              abs += std::fabs(static_cast<double>(wd[j]) * xd[j]);
              if (type != kGgmlQ4_K) continue;
              const uint8_t* blk = row + j / 256 * kQ4_KBlockBytes;
              uint8_t sc, m;
              ScaleMinK4(static_cast<int>(j % 256 / 32), blk + 4, &sc, &m);
              uint16_t h;
              std::memcpy(&h, blk + 2, 2);
              abs += 2 * std::fabs(static_cast<double>(F16ToF32(h)) * m * xd[j]);
            }
            EXPECT_NEAR(y[v * rows + r], dot, 1e-6 * abs) << "row " << r << " vector " << v;
            // And the row kernel's twin within the same bound.
            const float row_twin = scalar::DotRowKQuant(type, row, act.q8(v), cols);
            EXPECT_NEAR(y[v * rows + r], row_twin, 2e-6 * abs);
          }
        }
      }
    }
  }
}

// Every compiled target equals the scalar twin bit for bit, whatever the
// number of vectors in a call (1-9: the 8-vector batches and a remainder)
// and the range of groups; a vector's results do not depend on the others.
// Extreme: every level at its largest against activation levels all +127
// or all -127, the largest integer sums (AVX2 keeps a sub-block's in int16).
TEST(PackedKQuantTest, EveryTargetEqualsTheScalarTwin) {
  const size_t rows = 48, cols = 1536, n_vecs = 9;
  for (uint32_t type : kTypes) {
    for (bool extreme : {false, true}) {
      SCOPED_TRACE(::testing::Message() << Name(type) << (extreme ? " extreme" : ""));
      const std::vector<uint8_t> w = RandomRows(type, rows, cols, 21, extreme);
      std::vector<uint8_t> packed(w.size());
      PackKQuantRows(type, w.data(), rows, cols, packed.data());
      std::vector<float> x = Gaussian(n_vecs * cols, 23, 2.0f);
      if (extreme) {
        for (size_t i = 0; i < x.size(); ++i) x[i] = (i / cols) % 2 == 0 ? 1.5f : -1.5f;
      }
      Activations act;
      act.Prepare(x.data(), n_vecs, cols, /*need_q8=*/true);
      std::vector<float> want(n_vecs * rows);
      scalar::PackedKQuantMatMulGroups(type, packed.data(), cols, act, 0, n_vecs, 0, rows / 16,
                                       want.data(), rows);
      ForEachTarget([&] {
        for (size_t count = 1; count <= n_vecs; ++count) {
          SCOPED_TRACE(::testing::Message() << count << " vectors");
          std::vector<float> got(count * rows, -1.0f);
          // Groups 1..2 in one call, group 0 in another: results must not care.
          PackedKQuantMatMulGroups(type, packed.data(), cols, act, n_vecs - count, n_vecs, 1, 3,
                                   got.data(), rows);
          PackedKQuantMatMulGroups(type, packed.data(), cols, act, n_vecs - count, n_vecs, 0, 1,
                                   got.data(), rows);
          for (size_t v = 0; v < count; ++v) {
            for (size_t r = 0; r < rows; ++r) {
              ASSERT_EQ(got[v * rows + r], want[(n_vecs - count + v) * rows + r])
                  << "vector " << v << " row " << r;
            }
          }
        }
      });
    }
  }
}

}  // namespace
}  // namespace st
