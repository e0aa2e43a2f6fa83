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

// The exact float numbers of the formula in rope.h, computed afresh.
std::vector<float> Reference(std::vector<float> x, int n_heads, int hd, int64_t pos,
                             double theta) {
  for (int h = 0; h < n_heads; ++h) {
    float* v = x.data() + h * hd;
    for (int j = 0; j < hd / 2; ++j) {
      const double phi = static_cast<double>(pos) * std::pow(theta, -2.0 * j / hd);
      const float c = static_cast<float>(std::cos(phi)), s = static_cast<float>(std::sin(phi));
      const float a = v[j], b = v[j + hd / 2];
      v[j] = a * c - b * s;
      v[j + hd / 2] = b * c + a * s;
    }
  }
  return x;
}

// RopeNeox keeps the previous call's tables; whatever the order of calls
// (same position twice as for q then k, a new position, another theta or
// head_dim, back again), each result equals the fresh computation bit for bit.
TEST(RopeTest, ReusedTablesGiveFreshResultsInAnyCallOrder) {
  struct Call {
    int n_heads, hd;
    int64_t pos;
    double theta;
  };
  const Call calls[] = {{12, 128, 7, 1.5e6}, {2, 128, 7, 1.5e6},  {2, 128, 8, 1.5e6},
                        {4, 64, 8, 1.5e6},   {4, 64, 8, 1e4},     {12, 128, 8, 1.5e6},
                        {2, 128, 0, 1.5e6},  {3, 128, 99999, 1e4}, {3, 128, 99999, 1e4}};
  int salt = 10;
  for (const Call& c : calls) {
    SCOPED_TRACE(::testing::Message() << c.n_heads << " " << c.hd << " " << c.pos << " " << c.theta);
    const std::vector<float> x0 = testing::Gaussian(c.n_heads * c.hd, salt++);
    std::vector<float> x = x0;
    RopeNeox(x.data(), c.n_heads, c.hd, c.pos, c.theta);
    EXPECT_EQ(x, Reference(x0, c.n_heads, c.hd, c.pos, c.theta));
  }
}

}  // namespace
}  // namespace st
