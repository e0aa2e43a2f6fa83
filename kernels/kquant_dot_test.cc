// st::DotRowsKQuant (SIMD, every compiled target) and scalar::DotRowKQuant
// against a double-precision dot of the weights as ggml dequantizes them
// (kernels/ggml_storage.h, bit-exact to ggml) with the dequantized Q8_0
// activations. Bounds relative to S = sum_j |w_j| |x_j| (for Q4_K plus
// twice sum_j |dmin * m| |x_j|, kquant_dot.h): the integer sums are exact,
// only float roundings differ (1e-6 of that, as dot_test.cc's integer
// paths).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/thread_pool.h"
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

size_t BlockBytes(uint32_t type) { return type == kGgmlQ4_K ? kQ4_KBlockBytes : kQ6_KBlockBytes; }

void PutHalf(uint8_t* p, float v) {
  const uint16_t h = F32ToF16(v);
  std::memcpy(p, &h, 2);
}

// `rows` rows of n weights: random levels, scales and mins (every byte
// pattern is a valid block), with f16 super-block scales of varied size.
// extreme: every level and scale at its largest (no rounding slack).
std::vector<uint8_t> RandomRows(uint32_t type, size_t rows, size_t n, uint32_t seed,
                                bool extreme = false) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> w(rows * n / 256 * BlockBytes(type));
  for (uint8_t& b : w) b = extreme ? 0xFF : static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(0.0005f, 0.02f);
  for (size_t b = 0; b < w.size() / BlockBytes(type); ++b) {
    uint8_t* blk = w.data() + b * BlockBytes(type);
    if (type == kGgmlQ4_K) {
      PutHalf(blk, extreme ? 0.02f : scale(rng));
      PutHalf(blk + 2, extreme ? 0.01f : scale(rng));
    } else {
      if (extreme) {  // scales +127 and -128 (int8 0x7F / 0x80)
        for (int j = 0; j < 16; ++j) blk[192 + j] = j % 2 == 0 ? 0x7F : 0x80;
      }
      PutHalf(blk + 208, extreme ? 0.02f : scale(rng));
    }
  }
  return w;
}

std::vector<float> Dequantized(uint32_t type, const uint8_t* row, size_t n) {
  std::vector<float> out(n);
  (type == kGgmlQ4_K ? DequantizeQ4_K : DequantizeQ6_K)(row, out.data(), n);
  return out;
}

struct Vec {
  std::vector<BlockQ8_0> q8;
  std::vector<float> deq;
};

Vec MakeVec(size_t n, uint32_t seed, bool extreme = false) {
  std::vector<float> x = Gaussian(n, seed, 3.0f);
  if (extreme) {
    for (size_t j = 0; j < n; ++j) x[j] = j % 3 == 0 ? -1.0f : 1.0f;  // levels of +-127
  }
  Vec v;
  v.q8.resize(n / kQK);
  QuantizeRow(DType::kQ8_0, x.data(), v.q8.data(), n);
  if (extreme) {  // -128 (never from QuantizeRow, but a valid level byte)
    for (size_t j = 0; j < kQK; j += 2) v.q8[0].qs[j] = -128;
  }
  v.deq.resize(n);
  DequantizeRow(DType::kQ8_0, v.q8.data(), v.deq.data(), n);
  return v;
}

// (exact dot in double, the bound's scale: S = sum |w| |x|, plus for Q4_K
// twice sum |dmin * m| |x|, see kquant_dot.h)
std::pair<double, double> Reference(uint32_t type, const uint8_t* row,
                                    const std::vector<float>& x) {
  const std::vector<float> w = Dequantized(type, row, x.size());
  double dot = 0, abs = 0;
  for (size_t j = 0; j < w.size(); ++j) {
    dot += static_cast<double>(w[j]) * x[j];
    abs += std::fabs(static_cast<double>(w[j]) * x[j]);
    if (type == kGgmlQ4_K) {
      const uint8_t* blk = row + j / 256 * kQ4_KBlockBytes;
      uint8_t sc, m;
      ScaleMinK4(static_cast<int>(j % 256 / 32), blk + 4, &sc, &m);
      uint16_t h;
      std::memcpy(&h, blk + 2, 2);
      abs += 2 * std::fabs(static_cast<double>(F16ToF32(h)) * m * x[j]);
    }
  }
  return {dot, abs};
}

constexpr uint32_t kTypes[] = {kGgmlQ4_K, kGgmlQ6_K};

TEST(KQuantDotTest, ScalarAndEveryTargetMatchTheDequantizedDot) {
  for (uint32_t type : kTypes) {
    for (size_t n : {256u, 768u, 1536u, 2560u}) {
      for (bool extreme : {false, true}) {
        SCOPED_TRACE(::testing::Message() << (type == kGgmlQ4_K ? "Q4_K" : "Q6_K") << " n=" << n
                                          << (extreme ? " extreme" : ""));
        const std::vector<uint8_t> w = RandomRows(type, 1, n, 11 + n, extreme);
        const Vec x = MakeVec(n, 5 + n, extreme);
        const auto [want, abs] = Reference(type, w.data(), x.deq);
        const float ref = scalar::DotRowKQuant(type, w.data(), x.q8.data(), n);
        EXPECT_NEAR(ref, want, 1e-6 * abs);
        ForEachTarget([&] {
          const BlockQ8_0* xs = x.q8.data();
          float got = 0;
          DotRowsKQuant(type, w.data(), w.size(), nullptr, 1, &xs, 1, n, &got, 1);
          EXPECT_NEAR(got, ref, 1e-6 * abs);
        });
      }
    }
  }
}

// Several rows (odd row strides: rows need no alignment) and up to 9
// vectors: each result equals the one-vector call bit for bit.
TEST(KQuantDotTest, RowsAndVectorCountsDoNotChangeResults) {
  const size_t n = 1536, rows = 5;
  for (uint32_t type : kTypes) {
    SCOPED_TRACE(type == kGgmlQ4_K ? "Q4_K" : "Q6_K");
    const size_t row_bytes = n / 256 * BlockBytes(type);
    const std::vector<uint8_t> packed = RandomRows(type, rows, n, 3);
    std::vector<uint8_t> w(rows * (row_bytes + 1) + 1);  // 1 byte apart, odd start
    for (size_t r = 0; r < rows; ++r) {
      std::memcpy(w.data() + 1 + r * (row_bytes + 1), packed.data() + r * row_bytes, row_bytes);
    }
    std::vector<Vec> vecs;
    std::vector<const BlockQ8_0*> xs;
    for (int v = 0; v < 9; ++v) vecs.push_back(MakeVec(n, 100 + v));
    for (const Vec& v : vecs) xs.push_back(v.q8.data());
    ForEachTarget([&] {
      std::vector<float> one(9 * rows);
      for (size_t v = 0; v < 9; ++v) {
        DotRowsKQuant(type, w.data() + 1, row_bytes + 1, nullptr, rows, &xs[v], 1, n,
                      one.data() + v * rows, 1);
      }
      for (size_t count : {2u, 3u, 4u, 5u, 8u, 9u}) {
        std::vector<float> y(count * 7, -1.0f);
        DotRowsKQuant(type, w.data() + 1, row_bytes + 1, nullptr, rows, xs.data(), count, n,
                      y.data(), 7);
        for (size_t v = 0; v < count; ++v) {
          for (size_t r = 0; r < rows; ++r) {
            EXPECT_EQ(y[v * 7 + r], one[v * rows + r]) << "vector " << v << " of " << count << ", row " << r;
          }
          EXPECT_EQ(y[v * 7 + 5], -1.0f) << "written past the last row";
          EXPECT_EQ(y[v * 7 + 6], -1.0f) << "written past the last row";
        }
      }
      // Listed rows (any order) give the same numbers at their own places.
      const uint32_t listed[] = {4, 0, 2};
      std::vector<float> y(2 * 7, -1.0f);
      DotRowsKQuant(type, w.data() + 1, row_bytes + 1, listed, 3, xs.data(), 2, n, y.data(), 7);
      for (size_t v = 0; v < 2; ++v) {
        for (uint32_t r : listed) EXPECT_EQ(y[v * 7 + r], one[v * rows + r]) << "listed row " << r;
        for (size_t r : {1, 3, 5, 6}) EXPECT_EQ(y[v * 7 + r], -1.0f) << "unlisted row " << r << " written";
      }
      // And each is the dequantized dot.
      for (size_t r = 0; r < rows; ++r) {
        const auto [want, abs] = Reference(type, packed.data() + r * row_bytes, vecs[0].deq);
        EXPECT_NEAR(one[r], want, 1e-6 * abs);
      }
    });
  }
}

// A Q4_K block whose weights are all exactly 0 (level 1, scale = min = 63,
// d = dmin): the scalar twin gives 0; the SIMD kernels, which round the
// level sums and the mins apart, give a few ulps of those terms (the
// bound of kquant_dot.h), not more.
TEST(KQuantDotTest, Q4_KMinsThatCancelTheLevels) {
  const size_t n = 512;
  std::vector<uint8_t> w(n / 256 * kQ4_KBlockBytes, 0xFF);  // scales and mins: all 63
  for (size_t b = 0; b < n / 256; ++b) {
    uint8_t* blk = w.data() + b * kQ4_KBlockBytes;
    PutHalf(blk, 0.0123f);
    PutHalf(blk + 2, 0.0123f);
    std::fill(blk + 16, blk + kQ4_KBlockBytes, 0x11);  // every level 1
  }
  for (float v : Dequantized(kGgmlQ4_K, w.data(), n)) ASSERT_EQ(v, 0.0f);
  const Vec x = MakeVec(n, 77);
  EXPECT_EQ(scalar::DotRowKQuant(kGgmlQ4_K, w.data(), x.q8.data(), n), 0.0f);
  const auto [want, abs] = Reference(kGgmlQ4_K, w.data(), x.deq);
  ASSERT_EQ(want, 0.0);
  ASSERT_GT(abs, 0.0);
  ForEachTarget([&] {
    const BlockQ8_0* xs = x.q8.data();
    float got = 1;
    DotRowsKQuant(kGgmlQ4_K, w.data(), w.size(), nullptr, 1, &xs, 1, n, &got, 1);
    EXPECT_NEAR(got, 0.0, 1e-6 * abs);
  });
}

// A dense matrix computed as stored (model/weights.h): MatMul and
// MatMulMany give every (row, vector) DotRowsKQuant's own number, whatever
// the vector count (chunks of 8), thread count or job mix.
TEST(KQuantDotTest, MatMulOfAStoredMatrixIsTheRowKernels) {
  // Rows no multiple of 2, 4 or 16; 6 super-blocks per row, tiles of 75
  // (Q4_K) and 52 (Q6_K) rows.
  constexpr size_t kRows = 259, kCols = 1536;
  ThreadPool pool(2);
  for (uint32_t type : kTypes) {
    const std::vector<uint8_t> w = RandomRows(type, kRows, kCols, 31 + type);
    const MatrixRef m{.type = DType::kQ8_0, .data = w.data(), .rows = kRows, .cols = kCols,
                      .storage = FindStorageFormat(type)};
    ASSERT_EQ(m.row_bytes(), kCols / 256 * BlockBytes(type));
    for (size_t n_vecs : {1, 5, 11}) {
      SCOPED_TRACE(::testing::Message() << "type " << type << " vectors " << n_vecs);
      const std::vector<float> x = Gaussian(n_vecs * kCols, 7 + n_vecs, 2.0f);
      Activations act;
      act.Prepare(x.data(), n_vecs, kCols, /*need_q8=*/true);
      std::vector<float> want(n_vecs * kRows);
      for (size_t i = 0; i < n_vecs; ++i) {
        const BlockQ8_0* xs = act.q8(i);
        for (size_t r = 0; r < kRows; ++r) {
          DotRowsKQuant(type, m.row(r), m.row_bytes(), nullptr, 1, &xs, 1, kCols,
                        &want[i * kRows + r], 1);
        }
      }
      for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
        std::vector<float> got(want.size(), -1.0f);
        MatMul(m, act, got.data(), p);
        EXPECT_EQ(got, want);
        // Beside a Q8_0 matrix in one fork-join, as attention's q, k and v.
        std::vector<float> got_many(want.size(), -1.0f), other(n_vecs * 32);
        std::vector<BlockQ8_0> q8_rows(32 * kCols / kQK);
        const std::vector<float> o = Gaussian(32 * kCols, 3, 1.0f);
        QuantizeRow(DType::kQ8_0, o.data(), q8_rows.data(), o.size());
        const MatrixRef q8m{.type = DType::kQ8_0, .data = q8_rows.data(), .rows = 32, .cols = kCols};
        const MatMulJob jobs[] = {{&q8m, &act, other.data()}, {&m, &act, got_many.data()}};
        MatMulMany(jobs, p);
        EXPECT_EQ(got_many, want);
      }
    }
  }
}

TEST(KQuantDotTest, SupportedTypes) {
  EXPECT_TRUE(KQuantDotSupported(kGgmlQ4_K));
  EXPECT_TRUE(KQuantDotSupported(kGgmlQ6_K));
  EXPECT_FALSE(KQuantDotSupported(kGgmlQ5_K));
  EXPECT_FALSE(KQuantDotSupported(kGgmlQ3_K));
  EXPECT_FALSE(KQuantDotSupported(2));  // Q4_0 has its own kernels
}

}  // namespace
}  // namespace st
