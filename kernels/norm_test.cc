// st::RmsNorm (SIMD, every target) against scalar::RmsNorm and by hand.
// Bound: |simd - ref| <= 1e-6 |ref| per element (same float operations; the
// double sum of squares is only reordered).
#include "kernels/norm.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/test_util.h"

namespace st {
namespace {

using ::st::testing::ForEachTarget;
using ::st::testing::Gaussian;

TEST(NormTest, HandComputed) {
  const float x[2] = {3.0f, 4.0f};
  const float g[2] = {1.0f, 2.0f};
  float y[2];
  // mean(x^2) = 12.5: y = g * x / sqrt(12.5).
  RmsNorm(x, g, 2, 0.0f, y);
  EXPECT_NEAR(y[0], 0.848528137f, 1e-6f);
  EXPECT_NEAR(y[1], 2.262741700f, 1e-6f);
  scalar::RmsNorm(x, g, 2, 0.0f, y);
  EXPECT_NEAR(y[0], 0.848528137f, 1e-6f);
  // eps matters for tiny inputs: x = 0 gives 0, not NaN.
  const float z[2] = {0.0f, 0.0f};
  RmsNorm(z, g, 2, 1e-6f, y);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], 0.0f);
}

TEST(NormTest, SimdMatchesScalar) {
  ForEachTarget([] {
    for (size_t n : {1, 7, 32, 100, 1536, 2048, 4096 + 3}) {
      const std::vector<float> x = Gaussian(n, 10 + n, 5.0f);
      const std::vector<float> g = Gaussian(n, 20 + n);
      std::vector<float> y(n), ref(n);
      RmsNorm(x.data(), g.data(), n, 1e-6f, y.data());
      scalar::RmsNorm(x.data(), g.data(), n, 1e-6f, ref.data());
      for (size_t j = 0; j < n; ++j) ASSERT_NEAR(y[j], ref[j], 1e-6f * std::fabs(ref[j])) << n;
      // In place (y aliases x) gives the same result.
      std::vector<float> inplace = x;
      RmsNorm(inplace.data(), g.data(), n, 1e-6f, inplace.data());
      EXPECT_EQ(inplace, y);
    }
  });
}

TEST(NormTest, ScalarMatchesDoubleFormula) {
  const size_t n = 1536;
  const std::vector<float> x = Gaussian(n, 1, 100.0f);
  const std::vector<float> g = Gaussian(n, 2);
  std::vector<float> y(n);
  scalar::RmsNorm(x.data(), g.data(), n, 1e-6f, y.data());
  double ss = 0.0;
  for (float v : x) ss += static_cast<double>(v) * v;
  const double inv = 1.0 / std::sqrt(ss / n + 1e-6);
  for (size_t j = 0; j < n; ++j) EXPECT_NEAR(y[j], g[j] * x[j] * inv, 1e-6 * std::fabs(g[j] * x[j] * inv));
}

}  // namespace
}  // namespace st
