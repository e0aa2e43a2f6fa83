// The split Q4_0 row layout: SplitQ4_0Row / JoinQ4_0Row round-trip, and
// DotRowsIndexedSplitQ4_0 on every compiled target against scalar::DotRow of
// the joined rows, within dot_test.cc's bounds (integer path: 1e-6 * S, S =
// sum |w_j| |x_j|; against f32 vectors: 1e-5 * S), for widths that take the
// AVX-512 kernel (whole 4-block runs) and widths that do not.
#include "kernels/split_rows.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/test_util.h"

namespace st {
namespace {

using ::st::testing::ForEachTarget;
using ::st::testing::Gaussian;

TEST(SplitRowsTest, SplitThenJoinGivesTheRowBack) {
  for (size_t n : {32, 128, 1536}) {
    const std::vector<float> wf = Gaussian(n, 11 + n);
    std::vector<char> plain(RowBytes(DType::kQ4_0, n)), split(plain.size()), back(plain.size());
    QuantizeRow(DType::kQ4_0, wf.data(), plain.data(), n);
    SplitQ4_0Row(plain.data(), n, split.data());
    // Scales first: the last block's scale ends the row's first 2 * n / 32
    // bytes, and its levels end the row.
    const size_t last = n / kQK - 1;
    EXPECT_EQ(0, std::memcmp(split.data() + 2 * last, plain.data() + last * sizeof(BlockQ4_0), 2));
    EXPECT_EQ(0, std::memcmp(split.data() + split.size() - 16,
                             plain.data() + last * sizeof(BlockQ4_0) + 2, 16));
    JoinQ4_0Row(split.data(), n, back.data());
    EXPECT_EQ(plain, back) << n;
  }
}

TEST(SplitRowsTest, IndexedDotsMatchScalarOnEveryTarget) {
  // 1536 and 2560: the 4b and 21b widths; 128: one run; 96 and 1568: not
  // whole runs (joined path on every target).
  for (size_t n : {1536, 2560, 128, 96, 1568}) {
    const size_t rows = 40, rb = RowBytes(DType::kQ4_0, n);
    const std::vector<float> wf = Gaussian(rows * n, 3 + n, 0.1f);
    std::vector<char> plain(rows * rb), split(rows * rb + 1);
    for (size_t r = 0; r < rows; ++r) {
      QuantizeRow(DType::kQ4_0, &wf[r * n], plain.data() + r * rb, n);
      // At an odd address: the kernel must not assume alignment.
      SplitQ4_0Row(plain.data() + r * rb, n, split.data() + 1 + r * rb);
    }
    std::vector<float> deq(rows * n);
    for (size_t r = 0; r < rows; ++r) DequantizeRow(DType::kQ4_0, &plain[r * rb], &deq[r * n], n);
    const std::vector<uint32_t> list = {0, 1, 2, 5, 9, 10, 33, 34, 35, 36, 39, 7, 20, 21, 22};
    for (size_t n_vecs : {1, 2, 3, 4, 5, 9}) {
      const std::vector<float> x = Gaussian(n_vecs * n, 5 + n_vecs);
      for (bool q8 : {true, false}) {
        SCOPED_TRACE(::testing::Message() << "n=" << n << " vecs=" << n_vecs << " q8=" << q8);
        Activations act;
        act.Prepare(x.data(), n_vecs, n, q8);
        std::vector<VecRef> xs(n_vecs);
        for (size_t i = 0; i < n_vecs; ++i) xs[i] = act.vec(i);
        ForEachTarget([&] {
          std::vector<float> y(n_vecs * rows, -1.0f);
          DotRowsIndexedSplitQ4_0(split.data() + 1, rb, list.data(), list.size(), xs.data(),
                                  n_vecs, y.data(), rows);
          std::vector<bool> listed(rows, false);
          for (uint32_t r : list) listed[r] = true;
          for (size_t i = 0; i < n_vecs; ++i) {
            std::vector<float> xv(n);
            if (q8) {
              DequantizeRow(DType::kQ8_0, xs[i].q8, xv.data(), n);
            } else {
              std::memcpy(xv.data(), xs[i].f32, 4 * n);
            }
            for (size_t r = 0; r < rows; ++r) {
              const float got = y[i * rows + r];
              if (!listed[r]) {
                EXPECT_EQ(got, -1.0f) << "row " << r << " not listed but written";
                continue;
              }
              double s = 0.0;
              for (size_t j = 0; j < n; ++j) s += std::fabs(double{deq[r * n + j]} * xv[j]);
              const float want = scalar::DotRow(DType::kQ4_0, plain.data() + r * rb, xs[i]);
              ASSERT_NEAR(got, want, (q8 ? 1e-6 : 1e-5) * s) << "vec " << i << " row " << r;
            }
          }
        });
      }
    }
  }
}

// Each vector's result is the same bit for bit whatever the vectors dotted
// with it in the same call and whatever the row list (SparsePhases and
// ExpertFfn group tokens and rows differently and must agree exactly).
TEST(SplitRowsTest, ResultsDoNotDependOnTheCallsGrouping) {
  for (size_t n : {1536, 96}) {
    const size_t rows = 24, rb = RowBytes(DType::kQ4_0, n), n_vecs = 9;
    const std::vector<float> wf = Gaussian(rows * n, 30 + n, 0.1f);
    std::vector<char> plain(rb), split(rows * rb);
    for (size_t r = 0; r < rows; ++r) {
      QuantizeRow(DType::kQ4_0, &wf[r * n], plain.data(), n);
      SplitQ4_0Row(plain.data(), n, split.data() + r * rb);
    }
    const std::vector<float> x = Gaussian(n_vecs * n, 77);
    Activations act;
    act.Prepare(x.data(), n_vecs, n, true);
    std::vector<VecRef> xs(n_vecs);
    for (size_t i = 0; i < n_vecs; ++i) xs[i] = act.vec(i);
    std::vector<uint32_t> all(rows);
    for (size_t r = 0; r < rows; ++r) all[r] = static_cast<uint32_t>(r);
    ForEachTarget([&] {  // each target's kernel (AVX2 and AVX3 share the maddubs one)
      std::vector<float> together(n_vecs * rows);
      DotRowsIndexedSplitQ4_0(split.data(), rb, all.data(), rows, xs.data(), n_vecs,
                              together.data(), rows);
      for (size_t i = 0; i < n_vecs; ++i) {
        for (size_t r = 0; r < rows; ++r) {
          std::vector<float> alone(rows, -1.0f);  // written at index `row` only
          const uint32_t row = static_cast<uint32_t>(r);
          DotRowsIndexedSplitQ4_0(split.data(), rb, &row, 1, &xs[i], 1, alone.data(), rows);
          const float got = together[i * rows + r];
          EXPECT_EQ(0, std::memcmp(&got, &alone[r], 4)) << "n " << n << " vec " << i << " row "
                                                        << r << ": " << got << " vs " << alone[r];
        }
      }
    });
  }
}

}  // namespace
}  // namespace st
