// DotRowsIndexed equals DotRow row by row, bit for bit (and so the scalar
// twin within dot_test.cc's bounds, checked here too), for any row list and
// vector count.
#include <cmath>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dot.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/test_util.h"

namespace st {
namespace {

class DotRowsIndexedTest : public ::testing::TestWithParam<DType> {};

TEST_P(DotRowsIndexedTest, EqualsDotRowBitForBit) {
  const DType type = GetParam();
  const size_t rows = 70, cols = 320;
  const std::vector<float> wf = st::testing::Gaussian(rows * cols, 3, 0.1f);
  const size_t rb = RowBytes(type, cols);
  std::vector<uint8_t> w(rows * rb);
  for (size_t r = 0; r < rows; ++r) QuantizeRow(type, &wf[r * cols], w.data() + r * rb, cols);
  const std::vector<uint32_t> list = {0, 1, 2, 5, 9, 10, 33, 34, 35, 36, 50, 69, 7};
  // On every compiled target (each has its own row-index and prefetch
  // path), against that target's DotRow.
  st::testing::ForEachTarget([&] {
    for (size_t n_vecs : {1, 3, 5, 9}) {
      SCOPED_TRACE(n_vecs);
      const std::vector<float> x = st::testing::Gaussian(n_vecs * cols, 5 + n_vecs);
      Activations act;
      act.PrepareFor(type, x.data(), n_vecs, cols);
      std::vector<VecRef> xs(n_vecs);
      for (size_t i = 0; i < n_vecs; ++i) xs[i] = act.vec(i);
      std::vector<float> y(n_vecs * rows, -1.0f);
      DotRowsIndexed(type, w.data(), rb, list.data(), list.size(), xs.data(), n_vecs, y.data(),
                     rows);
      std::vector<bool> listed(rows, false);
      for (uint32_t r : list) listed[r] = true;
      for (size_t i = 0; i < n_vecs; ++i) {
        for (size_t r = 0; r < rows; ++r) {
          const float got = y[i * rows + r];
          if (!listed[r]) {
            EXPECT_EQ(got, -1.0f) << "row " << r << " not listed but written";
            continue;
          }
          const float want = DotRow(type, w.data() + r * rb, xs[i]);
          EXPECT_EQ(0, std::memcmp(&got, &want, 4)) << "vec " << i << " row " << r;
          const float ref = scalar::DotRow(type, w.data() + r * rb, xs[i]);
          EXPECT_NEAR(got, ref, 1e-3f * (1.0f + std::fabs(ref)));
        }
      }
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Types, DotRowsIndexedTest,
                         ::testing::Values(DType::kQ4_0, DType::kQ8_0, DType::kF16, DType::kF32));

}  // namespace
}  // namespace st
