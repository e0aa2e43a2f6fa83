// st::AxpyRow (SIMD, every target) against scalar::AxpyRow.
// Bound per element: |simd - ref| <= 1e-6 * (|y0| + |a w|): both compute
// y0 + a * w with at most three float roundings (the SIMD path rounds a * d
// first and fuses the multiply-add), each <= 2^-24 relative.
// st::AxpyRows against its twin on every target: AxpyRow row after row, or
// where it takes the grouped int8 path scalar::AxpyRowsGroupedQ4_0, bit for
// bit; that twin against a float64 sum within its coefficient rounding.
#include "kernels/axpy.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/targets.h"
#include "kernels/fp16.h"
#include "kernels/quant.h"
#include "kernels/test_util.h"

namespace st {
namespace {

using ::st::testing::ForEachTarget;
using ::st::testing::Gaussian;

TEST(AxpyTest, SimdMatchesScalar) {
  ForEachTarget([] {
    for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
      std::vector<size_t> sizes = {32, 96, 1536, 768 + 32};
      if (!IsBlockQuantized(type)) sizes.insert(sizes.end(), {1, 7, 33, 1537});
      for (size_t n : sizes) {
        SCOPED_TRACE(::testing::Message() << DTypeName(type) << " n=" << n);
        const std::vector<float> wf = Gaussian(n, 3 + n);
        std::vector<char> w(RowBytes(type, n) + 1);  // odd address: unaligned row
        QuantizeRow(type, wf.data(), w.data() + 1, n);
        std::vector<float> deq(n);
        DequantizeRow(type, w.data() + 1, deq.data(), n);
        const std::vector<float> y0 = Gaussian(n, 4 + n);
        const float a = -1.7f;
        std::vector<float> y = y0, ref = y0;
        AxpyRow(type, w.data() + 1, a, y.data(), n);
        scalar::AxpyRow(type, w.data() + 1, a, ref.data(), n);
        for (size_t j = 0; j < n; ++j) {
          ASSERT_NEAR(y[j], ref[j], 1e-6 * (std::fabs(y0[j]) + std::fabs(a * deq[j]))) << j;
          // And the reference is y0 + a * w to float rounding.
          ASSERT_NEAR(ref[j], y0[j] + double(a) * deq[j],
                      1e-6 * (std::fabs(y0[j]) + std::fabs(a * deq[j])));
        }
      }
    }
  });
}

// What AxpyRows must give on the current target: AxpyRow row after row, or
// the grouped twin.
void ExpectedRows(DType type, const char* w, size_t row_bytes, size_t offset,
                  const std::vector<uint32_t>& rows, const std::vector<float>& a, float* y,
                  size_t n) {
  if (AxpyRowsGrouped(type)) {
    scalar::AxpyRowsGroupedQ4_0(w, row_bytes, offset, rows.data(), a.data(), rows.size(), y, n);
    return;
  }
  for (size_t k = 0; k < rows.size(); ++k) {
    AxpyRow(type, w + rows[k] * row_bytes + offset, a[k], y, n);
  }
}

// AxpyRows over columns [first, first + n) of the listed rows, added to a
// random y, equals ExpectedRows bit for bit.
void ExpectRowsEqualTwin(DType type, const char* w, size_t row_bytes, size_t first,
                         const std::vector<uint32_t>& rows, const std::vector<float>& a, size_t n,
                         uint32_t seed) {
  const std::vector<float> y0 = Gaussian(n, seed);
  std::vector<float> y = y0, ref = y0;
  const size_t offset = RowBytes(type, first);
  AxpyRows(type, w, row_bytes, offset, rows.data(), a.data(), rows.size(), y.data(), n);
  ExpectedRows(type, w, row_bytes, offset, rows, a, ref.data(), n);
  for (size_t j = 0; j < n; ++j) ASSERT_EQ(y[j], ref[j]) << j;
}

// AxpyRows == its twin, bit for bit, for every type, tile
// remainder (1-3 blocks), a column offset into the rows (and no columns at
// all), and a few rows or more than one of the AVX-512 kernel's row chunks
// (ending in a partial one).
// An infinite or NaN half lands as inf or NaN in y on every target, in the
// vector body as in the tail (the body had widened it to a finite number on
// targets without F16C, so the result depended on the split).
TEST(AxpyTest, F16InfinityAndNanStayNonFinite) {
  const size_t n = 40;
  std::vector<uint16_t> w(n, 0x3C00);
  w[5] = 0x7C00;
  w[6] = 0x7E00;
  ForEachTarget([&] {
    std::vector<float> y(n, 0.0f);
    AxpyRow(DType::kF16, w.data(), 1.0f, y.data(), n);
    EXPECT_TRUE(std::isinf(y[5])) << y[5];
    EXPECT_TRUE(std::isnan(y[6])) << y[6];
    EXPECT_EQ(y[0], 1.0f);
  });
}

TEST(AxpyTest, RowsEqualTheirTwin) {
  std::vector<uint32_t> many;  // 39 rows: chunks of 16, 16 and 7 at 23 blocks
  for (uint32_t r = 0; r < 78; r += 2) many.push_back(r + (r % 6 == 0));
  ForEachTarget([&] {
    for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
      const size_t cols = 32 * 23, n_rows = 80;
      const size_t row_bytes = RowBytes(type, cols);
      std::vector<char> w(row_bytes * n_rows);
      for (size_t r = 0; r < n_rows; ++r) {
        QuantizeRow(type, Gaussian(cols, 50 + r).data(), w.data() + r * row_bytes, cols);
      }
      for (const std::vector<uint32_t>& rows :
           {std::vector<uint32_t>{0, 3, 4, 5, 17, 30, 39}, std::vector<uint32_t>{9},
            std::vector<uint32_t>{2, 7, 8, 60}, many}) {
        const std::vector<float> a = Gaussian(rows.size(), 8);
        for (auto [first, n] : {std::pair<size_t, size_t>{0, cols},
                                {32, 32 * 7},
                                {64 * 3, 32 * 6},
                                {64, 32 * 9},
                                {64, 0}}) {
          SCOPED_TRACE(::testing::Message() << DTypeName(type) << " rows=" << rows.size()
                                            << " first=" << first << " n=" << n);
          ExpectRowsEqualTwin(type, w.data(), row_bytes, first, rows, a, n, 9);
        }
      }
    }
  });
}

// Rows wider than one coefficient window of the grouped path (128 blocks):
// 151 blocks, whole and from an offset into the second window.
TEST(AxpyTest, WideRowsEqualTheirTwin) {
  const size_t cols = 32 * 151, n_rows = 12;
  std::vector<uint32_t> rows = {0, 2, 3, 5, 6, 7, 11};
  ForEachTarget([&] {
    for (DType type : {DType::kQ8_0, DType::kQ4_0}) {
      const size_t row_bytes = RowBytes(type, cols);
      std::vector<char> w(row_bytes * n_rows);
      for (size_t r = 0; r < n_rows; ++r) {
        QuantizeRow(type, Gaussian(cols, 80 + r).data(), w.data() + r * row_bytes, cols);
      }
      const std::vector<float> a = Gaussian(rows.size(), 81);
      for (auto [first, n] : {std::pair<size_t, size_t>{0, cols}, {32 * 130, 32 * 21}}) {
        SCOPED_TRACE(::testing::Message() << DTypeName(type) << " first=" << first << " n=" << n);
        ExpectRowsEqualTwin(type, w.data(), row_bytes, first, rows, a, n, 82);
      }
    }
  });
}

// The grouped path is the one AVX3_DL (AVX-512 with VNNI and VBMI) takes,
// and only there, and only for Q4_0.
TEST(AxpyTest, GroupedOnAvx3DlOnly) {
  ForEachTarget([] {
    const bool dl = (hwy::SupportedTargets() & HWY_AVX3_DL) != 0;
    EXPECT_EQ(AxpyRowsGrouped(DType::kQ4_0), dl);
    EXPECT_FALSE(AxpyRowsGrouped(DType::kQ8_0));
    EXPECT_FALSE(AxpyRowsGrouped(DType::kF32));
  });
}

// Grouped: coefficients too small for 127 / m leave y as it was (no
// overflow, no undefined conversion); a NaN or infinite one turns the
// group's elements NaN, as the float path would. SIMD and twin alike.
TEST(AxpyTest, GroupedTinyAndNonFiniteCoefficients) {
  const size_t cols = 32 * 17, row_bytes = RowBytes(DType::kQ4_0, cols);
  std::vector<char> w(row_bytes * 8);
  for (size_t r = 0; r < 8; ++r) {
    QuantizeRow(DType::kQ4_0, Gaussian(cols, 95 + r).data(), w.data() + r * row_bytes, cols);
  }
  const std::vector<uint32_t> rows = {1, 2, 4, 6, 7};  // groups of 4 and 1
  const std::vector<float> y0 = Gaussian(cols, 96);
  auto run = [&](const std::vector<float>& a, bool simd) {
    std::vector<float> y = y0;
    if (simd) {
      AxpyRows(DType::kQ4_0, w.data(), row_bytes, 0, rows.data(), a.data(), rows.size(), y.data(),
               cols);
    } else {
      scalar::AxpyRowsGroupedQ4_0(w.data(), row_bytes, 0, rows.data(), a.data(), rows.size(),
                                  y.data(), cols);
    }
    return y;
  };
  ForEachTarget([&] {
    for (bool simd : {false, true}) {
      if (simd && !AxpyRowsGrouped(DType::kQ4_0)) continue;
      SCOPED_TRACE(simd ? "simd" : "twin");
      EXPECT_EQ(run({1e-38f, -2e-38f, 3e-38f, 1e-39f, 0.0f}, simd), y0);
      const float nan = std::numeric_limits<float>::quiet_NaN();
      const float inf = std::numeric_limits<float>::infinity();
      for (float bad : {nan, inf}) {
        const std::vector<float> y = run({0.5f, bad, -1.0f, 2.0f, 0.25f}, simd);
        for (size_t j = 0; j < cols; ++j) ASSERT_TRUE(std::isnan(y[j])) << j;
      }
    }
  });
}

// The tile kernels read nothing past a row's last block (the grouped Q4_0
// path gathers 16 blocks' scales from 64-byte loads, the float path loads a
// block's levels whole): the last row ends at a page that is followed by an
// inaccessible one, for every tile width and a run of 16 blocks or more.
TEST(AxpyTest, RowsReadNothingPastTheLastRow) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* map = mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(map, MAP_FAILED);
  char* const guard = static_cast<char*>(map) + 2 * page;
  ASSERT_EQ(mprotect(guard, page, PROT_NONE), 0);
  ForEachTarget([&] {
    for (DType type : {DType::kQ8_0, DType::kQ4_0}) {
      for (size_t blocks : {1, 2, 3, 4, 5, 8, 9, 12, 13, 16, 17, 32}) {
        SCOPED_TRACE(::testing::Message() << DTypeName(type) << " blocks=" << blocks);
        const size_t cols = 32 * blocks, row_bytes = RowBytes(type, cols);
        char* w = guard - 2 * row_bytes;  // two rows, the second ending at the guard
        for (size_t r = 0; r < 2; ++r) {
          QuantizeRow(type, Gaussian(cols, 70 + r).data(), w + r * row_bytes, cols);
        }
        const std::vector<uint32_t> rows = {0, 1};
        const std::vector<float> a = {0.5f, -2.0f};
        std::vector<float> y(cols, 1.0f), ref(cols, 1.0f);
        AxpyRows(type, w, row_bytes, 0, rows.data(), a.data(), rows.size(), y.data(), cols);
        ExpectedRows(type, w, row_bytes, 0, rows, a, ref.data(), cols);
        for (size_t j = 0; j < cols; ++j) ASSERT_EQ(y[j], ref[j]) << j;
      }
    }
  });
  munmap(map, 3 * page);
}

// The grouped twin against y0 + sum a[k] * w_k in float64: each coefficient
// c = a * d is off by at most m / 254 (m the largest |c| of its group and
// block), times |level - 8| <= 8 per row, plus float rounding of the sums.
TEST(AxpyTest, GroupedTwinWithinCoefficientRounding) {
  const size_t cols = 32 * 7, n_rows = 30;
  const size_t row_bytes = RowBytes(DType::kQ4_0, cols);
  std::vector<char> w(row_bytes * n_rows);
  for (size_t r = 0; r < n_rows; ++r) {
    QuantizeRow(DType::kQ4_0, Gaussian(cols, 90 + r).data(), w.data() + r * row_bytes, cols);
  }
  for (size_t count : {1, 4, 7, 13}) {
    SCOPED_TRACE(count);
    std::vector<uint32_t> rows;
    for (size_t k = 0; k < count; ++k) rows.push_back(static_cast<uint32_t>(2 * k + 1));
    std::vector<float> a = Gaussian(count, 91);
    a[0] *= 40.0f;  // one large coefficient: the rest of its group rounds coarsely
    const std::vector<float> y0 = Gaussian(cols, 92);
    std::vector<float> y = y0;
    scalar::AxpyRowsGroupedQ4_0(w.data(), row_bytes, 0, rows.data(), a.data(), count, y.data(),
                                cols);
    std::vector<double> ref(y0.begin(), y0.end()), bound(cols, 0.0), mag(cols, 0.0);
    for (size_t g = 0; g < count; g += 4) {
      for (size_t b = 0; b < cols / kQK; ++b) {
        double m = 0;
        for (size_t k = g; k < std::min(g + 4, count); ++k) {
          const auto* blk = reinterpret_cast<const BlockQ4_0*>(w.data() + rows[k] * row_bytes) + b;
          m = std::max(m, std::fabs(double(a[k]) * F16ToF32(blk->d)));
        }
        for (size_t k = g; k < std::min(g + 4, count); ++k) {
          const auto* blk = reinterpret_cast<const BlockQ4_0*>(w.data() + rows[k] * row_bytes) + b;
          for (size_t e = 0; e < kQK; ++e) {
            const uint8_t byte = blk->qs[e % (kQK / 2)];
            const int level = (e < kQK / 2 ? byte & 0x0F : byte >> 4) - 8;
            const double term = double(a[k]) * F16ToF32(blk->d) * level;
            ref[b * kQK + e] += term;
            mag[b * kQK + e] += std::fabs(term);
            bound[b * kQK + e] += m / 254 * std::abs(level);
          }
        }
      }
    }
    for (size_t j = 0; j < cols; ++j) {
      ASSERT_NEAR(y[j], ref[j], bound[j] * 1.001 + 1e-6 * (std::fabs(y0[j]) + mag[j])) << j;
    }
  }
}

// The grouped rule by hand: rows with scale 1 and coefficients 1 and 0.5 give
// levels 127 and 64 (63.5 rounds to even), scale 1/127.
TEST(AxpyTest, GroupedQ4_0ByHand) {
  BlockQ4_0 w[2] = {};
  w[0].d = w[1].d = 0x3C00;  // fp16 1.0
  for (auto& q : w[0].qs) q = 0x88;
  for (auto& q : w[1].qs) q = 0x88;
  w[0].qs[0] = 0x8F;  // element 0: level 15 - 8 = 7
  w[1].qs[0] = 0x80;  // element 0: level 0 - 8 = -8
  const std::vector<uint32_t> rows = {0, 1};
  const std::vector<float> a = {1.0f, 0.5f};
  std::vector<float> y(kQK, 1.0f);
  scalar::AxpyRowsGroupedQ4_0(w, sizeof(BlockQ4_0), 0, rows.data(), a.data(), 2, y.data(), kQK);
  EXPECT_EQ(y[0], std::fma(127.0f * 7 - 64.0f * 8, 1.0f / 127.0f, 1.0f));
  EXPECT_EQ(y[1], 1.0f);
  ForEachTarget([&] {
    std::vector<float> simd(kQK, 1.0f), twin(kQK, 1.0f);
    AxpyRows(DType::kQ4_0, w, sizeof(BlockQ4_0), 0, rows.data(), a.data(), 2, simd.data(), kQK);
    ExpectedRows(DType::kQ4_0, reinterpret_cast<const char*>(w), sizeof(BlockQ4_0), 0, rows, a,
                 twin.data(), kQK);
    EXPECT_EQ(simd, twin);
  });
}

TEST(AxpyTest, Q4_0ByHand) {
  BlockQ4_0 w{};
  w.d = 0x4000;  // fp16 2.0
  for (auto& q : w.qs) q = 0x88;
  w.qs[0] = 0x8F;  // element 0: (15 - 8) * 2 = 14
  w.qs[2] = 0x08;  // element 18: (0 - 8) * 2 = -16
  ForEachTarget([&] {
    std::vector<float> y(kQK, 1.0f);
    AxpyRow(DType::kQ4_0, &w, 0.5f, y.data(), kQK);
    EXPECT_EQ(y[0], 8.0f);
    EXPECT_EQ(y[18], -7.0f);
    EXPECT_EQ(y[1], 1.0f);
    EXPECT_EQ(y[16], 1.0f);
  });
}

}  // namespace
}  // namespace st
