#include "kernels/rope.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/test_util.h"

namespace st {
namespace {

TEST(RopeTest, HandComputed) {
  // head_dim 4, theta 1e4, pos 1: inv_freq = {1, 0.01}; pairs (x0, x2), (x1, x3).
  std::vector<float> x = {1.0f, 2.0f, 3.0f, 4.0f};
  RopeNeox(x.data(), 1, 4, 1, 10000.0);
  EXPECT_NEAR(x[0], -1.98411065f, 1e-6f);  // 1 cos 1 - 3 sin 1
  EXPECT_NEAR(x[1], 1.95990067f, 1e-6f);   // 2 cos .01 - 4 sin .01
  EXPECT_NEAR(x[2], 2.46237790f, 1e-6f);   // 3 cos 1 + 1 sin 1
  EXPECT_NEAR(x[3], 4.01979967f, 1e-6f);   // 4 cos .01 + 2 sin .01
}

TEST(RopeTest, PositionZeroIsIdentity) {
  const std::vector<float> x0 = testing::Gaussian(3 * 128, 1);
  std::vector<float> x = x0;
  RopeNeox(x.data(), 3, 128, 0, 1.5e6);
  EXPECT_EQ(x, x0);
}

// Large positions with the 4B model's theta: angles computed in double, so
// the result matches a double-precision rotation to float rounding, heads
// are rotated independently and norms are preserved.
TEST(RopeTest, LargePositionMatchesDoubleReference) {
  const int n_heads = 3, hd = 128;
  const int64_t pos = 1000003;
  const double theta = 1.5e6;
  const std::vector<float> x0 = testing::Gaussian(n_heads * hd, 2);
  std::vector<float> x = x0;
  RopeNeox(x.data(), n_heads, hd, pos, theta);
  for (int h = 0; h < n_heads; ++h) {
    double norm0 = 0.0, norm1 = 0.0;
    for (int j = 0; j < hd / 2; ++j) {
      const double phi = pos * std::pow(theta, -2.0 * j / hd);
      const double a = x0[h * hd + j], b = x0[h * hd + j + hd / 2];
      EXPECT_NEAR(x[h * hd + j], a * std::cos(phi) - b * std::sin(phi), 2e-6) << h << " " << j;
      EXPECT_NEAR(x[h * hd + j + hd / 2], b * std::cos(phi) + a * std::sin(phi), 2e-6);
      norm0 += a * a + b * b;
      norm1 += double(x[h * hd + j]) * x[h * hd + j] +
               double(x[h * hd + j + hd / 2]) * x[h * hd + j + hd / 2];
    }
    EXPECT_NEAR(norm1, norm0, 1e-5 * norm0);
  }
}

// The cos/sin cache is keyed by position, head_dim and theta: calls that
// share a cache slot (positions 512 apart) or a position with another theta
// or head_dim each get their own angles, in any order.
TEST(RopeTest, CachedAnglesNeverLeakBetweenKeys) {
  struct Call {
    int64_t pos;
    int hd;
    double theta;
  };
  const Call calls[] = {{7, 128, 1e6}, {519, 128, 1e6}, {7, 128, 1e4}, {7, 64, 1e6},
                        {7, 128, 1e6}, {1031, 128, 1e6}, {519, 128, 1e6}, {7, 64, 1e6}};
  for (const Call& c : calls) {
    const std::vector<float> x0 = testing::Gaussian(2 * c.hd, 5);
    std::vector<float> x = x0;
    RopeNeox(x.data(), 2, c.hd, c.pos, c.theta);
    for (int h = 0; h < 2; ++h) {
      for (int j = 0; j < c.hd / 2; ++j) {
        const double phi = c.pos * std::pow(c.theta, -2.0 * j / c.hd);
        const float cs = static_cast<float>(std::cos(phi)), sn = static_cast<float>(std::sin(phi));
        const float a = x0[h * c.hd + j], b = x0[h * c.hd + j + c.hd / 2];
        // A leaked slot would give other angles entirely; allow only
        // float rounding (and FMA contraction) differences.
        EXPECT_NEAR(x[h * c.hd + j], a * cs - b * sn, 1e-6) << c.pos << " " << c.hd << " " << c.theta;
        EXPECT_NEAR(x[h * c.hd + j + c.hd / 2], b * cs + a * sn, 1e-6);
      }
    }
  }
}

}  // namespace
}  // namespace st
