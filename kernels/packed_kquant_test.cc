// The 16-row packed Q4_K kernel (packed_kquant.h): the scalar twin against a
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

// Random Q4_K rows: every byte random (all patterns are valid levels and
// 6-bit scales), f16 d and dmin of varied size; extreme: every level,
// scale and min at its largest.
std::vector<uint8_t> RandomQ4_K(size_t rows, size_t cols, uint32_t seed, bool extreme = false) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> w(rows * cols / 256 * kQ4_KBlockBytes);
  for (uint8_t& b : w) b = extreme ? 0xFF : static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(0.0005f, 0.02f);
  for (size_t b = 0; b < w.size() / kQ4_KBlockBytes; ++b) {
    PutHalf(w.data() + b * kQ4_KBlockBytes, extreme ? 0.02f : scale(rng));
    PutHalf(w.data() + b * kQ4_KBlockBytes + 2, extreme ? 0.01f : scale(rng));
  }
  return w;
}

TEST(PackedKQuantTest, CanPackOnlyWholeGroupsOfQ4_K) {
  EXPECT_FALSE(CanPackKQuant(kGgmlQ6_K, 32, 512));
  EXPECT_FALSE(CanPackKQuant(kGgmlQ4_K, 24, 512));
  EXPECT_FALSE(CanPackKQuant(kGgmlQ4_K, 32, 384));
  EXPECT_FALSE(CanPackKQuant(kGgmlQ4_K, 0, 512));
  EXPECT_EQ(PackedKQuantGroupBytes(kGgmlQ4_K, 1536), 16u * 6 * kQ4_KBlockBytes);
}

TEST(PackedKQuantTest, ScalarTwinMatchesTheDequantizedDot) {
  const size_t rows = 32;
  for (size_t cols : {256u, 1536u}) {
    for (bool extreme : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "cols=" << cols << (extreme ? " extreme" : ""));
      const std::vector<uint8_t> w = RandomQ4_K(rows, cols, 7 + cols, extreme);
      std::vector<uint8_t> packed(w.size());
      PackKQuantRows(kGgmlQ4_K, w.data(), rows, cols, packed.data());
      const size_t n_vecs = 3;
      std::vector<float> x = Gaussian(n_vecs * cols, 9 + cols, 3.0f);
      Activations act;
      act.Prepare(x.data(), n_vecs, cols, /*need_q8=*/true);
      std::vector<float> y(n_vecs * rows);
      scalar::PackedKQuantMatMulGroups(kGgmlQ4_K, packed.data(), cols, act, 0, n_vecs, 0,
                                       rows / 16, y.data(), rows);
      const size_t row_bytes = cols / 256 * kQ4_KBlockBytes;
      for (size_t v = 0; v < n_vecs; ++v) {
        std::vector<float> xd(cols);
        DequantizeRow(DType::kQ8_0, act.q8(v), xd.data(), cols);
        for (size_t r = 0; r < rows; ++r) {
          const uint8_t* row = w.data() + r * row_bytes;
          std::vector<float> wd(cols);
          DequantizeQ4_K(row, wd.data(), cols);
          // Bound as kquant_dot.h's: 1e-6 of sum |w x| plus twice sum
          // |dmin m x| (a block's d * sc * q - dmin * m need not cancel).
          double dot = 0, abs = 0;
          for (size_t j = 0; j < cols; ++j) {
            dot += static_cast<double>(wd[j]) * xd[j];
            abs += std::fabs(static_cast<double>(wd[j]) * xd[j]);
            const uint8_t* blk = row + j / 256 * kQ4_KBlockBytes;
            uint8_t sc, m;
            ScaleMinK4(static_cast<int>(j % 256 / 32), blk + 4, &sc, &m);
            uint16_t h;
            std::memcpy(&h, blk + 2, 2);
            abs += 2 * std::fabs(static_cast<double>(F16ToF32(h)) * m * xd[j]);
          }
          EXPECT_NEAR(y[v * rows + r], dot, 1e-6 * abs) << "row " << r << " vector " << v;
          // And the row kernel's twin within the same bound.
          const float row_twin = scalar::DotRowKQuant(kGgmlQ4_K, row, act.q8(v), cols);
          EXPECT_NEAR(y[v * rows + r], row_twin, 2e-6 * abs);
        }
      }
    }
  }
}

// Every compiled target equals the scalar twin bit for bit, whatever the
// number of vectors in a call (1-9: the 8-vector batches and a remainder)
// and the range of groups; a vector's results do not depend on the others.
TEST(PackedKQuantTest, EveryTargetEqualsTheScalarTwin) {
  const size_t rows = 48, cols = 1536, n_vecs = 9;
  const std::vector<uint8_t> w = RandomQ4_K(rows, cols, 21);
  std::vector<uint8_t> packed(w.size());
  PackKQuantRows(kGgmlQ4_K, w.data(), rows, cols, packed.data());
  std::vector<float> x = Gaussian(n_vecs * cols, 23, 2.0f);
  Activations act;
  act.Prepare(x.data(), n_vecs, cols, /*need_q8=*/true);
  std::vector<float> want(n_vecs * rows);
  scalar::PackedKQuantMatMulGroups(kGgmlQ4_K, packed.data(), cols, act, 0, n_vecs, 0, rows / 16,
                                   want.data(), rows);
  ForEachTarget([&] {
    for (size_t count = 1; count <= n_vecs; ++count) {
      SCOPED_TRACE(::testing::Message() << count << " vectors");
      std::vector<float> got(count * rows, -1.0f);
      // Groups 1..2 in one call, group 0 in another: results must not care.
      PackedKQuantMatMulGroups(kGgmlQ4_K, packed.data(), cols, act, n_vecs - count, n_vecs, 1, 3,
                               got.data(), rows);
      PackedKQuantMatMulGroups(kGgmlQ4_K, packed.data(), cols, act, n_vecs - count, n_vecs, 0, 1,
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

}  // namespace
}  // namespace st
