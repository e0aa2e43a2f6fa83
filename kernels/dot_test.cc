// st::DotRow / st::DotRows (SIMD, every compiled target) against
// scalar::DotRow, plus hand-checked values.
//
// Bounds, relative to S = sum_j |w_j| |x_j| over the dequantized weights:
//  * float paths (F32, F16, BF16, Q4_0/Q8_0 against f32): |simd - ref| <=
//    1e-5 * S. The reference accumulates in double; SIMD accumulates in float
//    lanes, whose rounding error on Gaussian data is ~sqrt(n / lanes) * 2^-24.
//  * integer paths (Q4_0/Q8_0 against Q8_0): per-block int32 sums are exact
//    in both; only the float sum over blocks is reordered: <= 1e-6 * S. With
//    power-of-two scales every float operation is exact, and the results
//    must be bit-identical (IntegerPathIsExact).
#include <cmath>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dot.h"
#include "kernels/fp16.h"
#include "kernels/quant.h"
#include "kernels/test_util.h"

namespace st {
namespace {

using ::st::testing::ForEachTarget;
using ::st::testing::Gaussian;

constexpr DType kAllTypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0,
                               DType::kQ4_0};

// One quantized row stored at a deliberately odd address (offset 1) so that
// unaligned loads are exercised; `deq` is its dequantized value.
struct Row {
  std::vector<char> storage;
  std::vector<float> deq;
  const void* data() const { return storage.data() + 1; }
};

Row MakeRow(DType type, const std::vector<float>& w) {
  Row row;
  row.storage.resize(RowBytes(type, w.size()) + 1);
  QuantizeRow(type, w.data(), row.storage.data() + 1, w.size());
  row.deq.resize(w.size());
  DequantizeRow(type, row.data(), row.deq.data(), w.size());
  return row;
}

double AbsDot(const std::vector<float>& a, const float* b) {
  double s = 0.0;
  for (size_t j = 0; j < a.size(); ++j) s += std::fabs(static_cast<double>(a[j]) * b[j]);
  return s;
}

TEST(DotTest, SimdMatchesScalarAllTypesAndSizes) {
  const size_t kSizes[] = {32, 64, 96, 1536 + 32, 4096, 4096 + 32, 8192 + 96};
  const size_t kOddSizes[] = {1, 3, 7, 17, 33, 100, 1537, 4099};  // float types only
  ForEachTarget([&] {
    for (DType type : kAllTypes) {
      std::vector<size_t> sizes(std::begin(kSizes), std::end(kSizes));
      if (!IsBlockQuantized(type)) sizes.insert(sizes.end(), std::begin(kOddSizes), std::end(kOddSizes));
      for (size_t n : sizes) {
        SCOPED_TRACE(::testing::Message() << DTypeName(type) << " n=" << n);
        const Row w = MakeRow(type, Gaussian(n, 1000 + n));
        const std::vector<float> x = Gaussian(n, 7 + n);
        const double bound_f32 = 1e-5 * AbsDot(w.deq, x.data());
        const VecRef xf{x.data(), nullptr, n};
        EXPECT_NEAR(DotRow(type, w.data(), xf), scalar::DotRow(type, w.data(), xf), bound_f32);
        if (!IsBlockQuantized(type)) continue;
        std::vector<BlockQ8_0> q8(n / kQK);
        QuantizeRow(DType::kQ8_0, x.data(), q8.data(), n);
        std::vector<float> xq(n);
        DequantizeRow(DType::kQ8_0, q8.data(), xq.data(), n);
        const VecRef xq8{x.data(), q8.data(), n};
        EXPECT_NEAR(DotRow(type, w.data(), xq8), scalar::DotRow(type, w.data(), xq8),
                    1e-6 * AbsDot(w.deq, xq.data()));
      }
    }
  });
}

// Scalar reference is itself right: compare with a double dot of the
// dequantized values (the reference only reorders/rounds, relative 1e-6).
TEST(DotTest, ScalarMatchesDequantizedDot) {
  const size_t n = 1024;
  for (DType type : kAllTypes) {
    const Row w = MakeRow(type, Gaussian(n, 5));
    const std::vector<float> x = Gaussian(n, 6);
    double exact = 0.0;
    for (size_t j = 0; j < n; ++j) exact += static_cast<double>(w.deq[j]) * x[j];
    EXPECT_NEAR(scalar::DotRow(type, w.data(), VecRef{x.data(), nullptr, n}), exact,
                1e-6 * AbsDot(w.deq, x.data()))
        << DTypeName(type);
  }
}

// Power-of-two scales make every product and sum exactly representable, so
// the integer paths must agree bit for bit with the scalar integer twin and
// with the exact value.
TEST(DotTest, IntegerPathIsExact) {
  const size_t n = 4096 + 64;
  std::vector<BlockQ8_0> x8(n / kQK);
  std::vector<BlockQ8_0> w8(n / kQK);
  std::vector<BlockQ4_0> w4(n / kQK);
  std::mt19937 rng(42);
  double exact8 = 0.0, exact4 = 0.0;
  for (size_t b = 0; b < n / kQK; ++b) {
    x8[b].d = F32ToF16(0.0625f);
    w8[b].d = F32ToF16(b % 2 ? 0.5f : 0.25f);
    w4[b].d = F32ToF16(b % 3 ? 2.0f : 0.125f);
    for (size_t j = 0; j < kQK; ++j) {
      x8[b].qs[j] = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
      w8[b].qs[j] = static_cast<int8_t>(static_cast<int>(rng() % 256) - 128);
    }
    for (size_t j = 0; j < kQK / 2; ++j) w4[b].qs[j] = static_cast<uint8_t>(rng());
    for (size_t j = 0; j < kQK; ++j) {
      const int q4 = j < 16 ? (w4[b].qs[j] & 15) - 8 : (w4[b].qs[j - 16] >> 4) - 8;
      exact8 += 0.0625 * F16ToF32(w8[b].d) * w8[b].qs[j] * x8[b].qs[j];
      exact4 += 0.0625 * F16ToF32(w4[b].d) * q4 * x8[b].qs[j];
    }
  }
  std::vector<float> xf(n, 0.0f);  // unused by the integer paths
  const VecRef x{xf.data(), x8.data(), n};
  ASSERT_EQ(scalar::DotRow(DType::kQ8_0, w8.data(), x), static_cast<float>(exact8));
  ASSERT_EQ(scalar::DotRow(DType::kQ4_0, w4.data(), x), static_cast<float>(exact4));
  ForEachTarget([&] {
    EXPECT_EQ(DotRow(DType::kQ8_0, w8.data(), x), static_cast<float>(exact8));
    EXPECT_EQ(DotRow(DType::kQ4_0, w4.data(), x), static_cast<float>(exact4));
  });
}

// Q4_0 nibble layout by hand: element i is the low nibble of qs[i], element
// i + 16 the high nibble; value = (nibble - 8) * d.
TEST(DotTest, Q4_0NibbleLayoutByHand) {
  BlockQ4_0 w{};
  w.d = F32ToF16(1.0f);
  for (int i = 0; i < 16; ++i) w.qs[i] = 0x88;  // all zeros after the -8 offset
  w.qs[3] = 0x8B;                               // element 3 = 11 - 8 = +3
  w.qs[5] = 0x18;                               // element 21 = 1 - 8 = -7
  std::vector<float> x(kQK, 0.0f);
  x[3] = 2.0f;
  x[21] = 10.0f;
  const VecRef xf{x.data(), nullptr, kQK};
  EXPECT_EQ(scalar::DotRow(DType::kQ4_0, &w, xf), 3 * 2.0f - 7 * 10.0f);
  BlockQ8_0 x8{};
  x8.d = F32ToF16(1.0f);
  x8.qs[3] = 2;
  x8.qs[21] = 10;
  const VecRef xq{x.data(), &x8, kQK};
  EXPECT_EQ(scalar::DotRow(DType::kQ4_0, &w, xq), -64.0f);
  ForEachTarget([&] {
    EXPECT_EQ(DotRow(DType::kQ4_0, &w, xf), -64.0f);
    EXPECT_EQ(DotRow(DType::kQ4_0, &w, xq), -64.0f);
  });
}

TEST(DotTest, F16SubnormalWeights) {
  // Subnormal and tiny halves must be widened exactly by every target.
  const size_t n = 64;
  std::vector<uint16_t> w(n);
  std::vector<float> x(n);
  for (size_t j = 0; j < n; ++j) {
    w[j] = static_cast<uint16_t>((j % 2 ? 0x8000 : 0) | (j * 16 + 1));  // subnormals
    x[j] = 1.0f;
  }
  const VecRef xf{x.data(), nullptr, n};
  const float ref = scalar::DotRow(DType::kF16, w.data(), xf);
  double exact = 0.0;
  for (size_t j = 0; j < n; ++j) exact += F16ToF32(w[j]);
  EXPECT_EQ(ref, static_cast<float>(exact));
  ForEachTarget([&] { EXPECT_EQ(DotRow(DType::kF16, w.data(), xf), ref); });
}

// Infinite and NaN halves stay infinite and NaN on every target (the
// software widening of targets without F16C had made them 65536 and 98304).
TEST(DotTest, F16InfinityAndNanWeights) {
  const size_t n = 64;
  std::vector<uint16_t> w(n, 0x3C00);  // 1.0
  std::vector<float> x(n, 1.0f);
  const VecRef xf{x.data(), nullptr, n};
  ForEachTarget([&] {
    w[5] = 0x7C00;  // +inf, inside the first vector on every target
    EXPECT_TRUE(std::isinf(DotRow(DType::kF16, w.data(), xf)));
    w[5] = 0x7E00;  // NaN
    EXPECT_TRUE(std::isnan(DotRow(DType::kF16, w.data(), xf)));
  });
}

TEST(DotTest, DotRowsMatchesDotRow) {
  const size_t n = 1536;
  for (DType type : kAllTypes) {
    for (size_t rows : {1, 3, 7, 257}) {
      const std::vector<float> wf = Gaussian(rows * n, 11 + rows);
      std::vector<char> w(RowBytes(type, n) * rows);
      for (size_t r = 0; r < rows; ++r) {
        QuantizeRow(type, wf.data() + r * n, w.data() + r * RowBytes(type, n), n);
      }
      const std::vector<float> x = Gaussian(n, 3);
      std::vector<BlockQ8_0> q8(n / kQK);
      QuantizeRow(DType::kQ8_0, x.data(), q8.data(), n);
      const VecRef v{x.data(), IsBlockQuantized(type) ? q8.data() : nullptr, n};
      std::vector<float> y(rows);
      DotRows(type, w.data(), RowBytes(type, n), rows, v, y.data());
      for (size_t r = 0; r < rows; ++r) {
        ASSERT_EQ(y[r], DotRow(type, w.data() + r * RowBytes(type, n), v))
            << DTypeName(type) << " rows=" << rows << " r=" << r;
      }
    }
  }
}

// DotRowsMulti shares each unpacked weight block among up to 4 vectors; every
// result must equal DotRow bit for bit (prefill and decode agree), on every
// target, for any vector count (groups of 4 plus a 1-3 remainder), odd row
// counts and block counts that exercise the 4-, 2- and 1-block tails.
TEST(DotTest, DotRowsMultiMatchesDotRow) {
  ForEachTarget([&] {
    for (DType type : kAllTypes) {
      for (size_t n : {32, 96, 160, 1536 + 96}) {
        const size_t rows = 5, row_bytes = RowBytes(type, n);
        const std::vector<float> wf = Gaussian(rows * n, 21 + n);
        std::vector<char> w(row_bytes * rows + 1);  // odd address: unaligned rows
        for (size_t r = 0; r < rows; ++r) {
          QuantizeRow(type, wf.data() + r * n, w.data() + 1 + r * row_bytes, n);
        }
        const size_t kMaxVecs = 9;
        const std::vector<float> x = Gaussian(kMaxVecs * n, 5 + n);
        std::vector<BlockQ8_0> q8(kMaxVecs * n / kQK);
        QuantizeRow(DType::kQ8_0, x.data(), q8.data(), kMaxVecs * n);
        std::vector<VecRef> vecs(kMaxVecs);
        for (size_t i = 0; i < kMaxVecs; ++i) {
          vecs[i] = VecRef{x.data() + i * n,
                           IsBlockQuantized(type) ? q8.data() + i * (n / kQK) : nullptr, n};
        }
        for (size_t n_vecs = 1; n_vecs <= kMaxVecs; ++n_vecs) {
          const size_t stride = rows + 2;
          std::vector<float> y(n_vecs * stride, -1.0f);
          DotRowsMulti(type, w.data() + 1, row_bytes, rows, vecs.data(), n_vecs, y.data(), stride);
          for (size_t i = 0; i < n_vecs; ++i) {
            for (size_t r = 0; r < rows; ++r) {
              ASSERT_EQ(y[i * stride + r], DotRow(type, w.data() + 1 + r * row_bytes, vecs[i]))
                  << DTypeName(type) << " n=" << n << " vecs=" << n_vecs << " i=" << i
                  << " r=" << r;
            }
            for (size_t r = rows; r < stride; ++r) ASSERT_EQ(y[i * stride + r], -1.0f);
          }
        }
      }
    }
  });
}

}  // namespace
}  // namespace st
