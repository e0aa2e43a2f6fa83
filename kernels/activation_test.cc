#include "kernels/activation.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/test_util.h"

namespace st {
namespace {

TEST(ActivationTest, ReGluByHand) {
  float gate[4] = {-1.0f, 0.0f, 2.0f, 0.5f};
  const float up[4] = {5.0f, 6.0f, 7.0f, -4.0f};
  float out[4];
  ReGlu(gate, up, out, 4);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], 0.0f);
  EXPECT_EQ(out[2], 14.0f);
  EXPECT_EQ(out[3], -2.0f);
  ReGlu(gate, up, gate, 4);  // out aliases gate
  EXPECT_EQ(gate[2], 14.0f);
  EXPECT_EQ(gate[0], 0.0f);
}

// Every target against the scalar twin, bit for bit (memcmp: +0 where the
// gate is not positive, never -0), with NaN, inf, zeros of both signs and
// odd lengths for the tail; and the count of positive gates.
TEST(ActivationTest, ReluMulCountEqualsItsScalarTwin) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  std::vector<float> g0(1000), u(1000);
  for (size_t i = 0; i < g0.size(); ++i) {
    g0[i] = normal(rng);
    u[i] = normal(rng);
  }
  const float specials[] = {0.0f, -0.0f, nan, -nan, inf, -inf, 1e-40f, -1e-40f};
  for (size_t i = 0; i < 8; ++i) {
    g0[10 + i] = specials[i];
    u[30 + i] = specials[i];
    u[10 + i] = -1.0f;
  }
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{17}, size_t{64}, g0.size()}) {
    std::vector<float> want(g0.begin(), g0.begin() + n);
    const size_t want_on = scalar::ReluMulCount(want.data(), u.data(), n);
    st::testing::ForEachTarget([&] {
      std::vector<float> got(g0.begin(), g0.begin() + n);
      EXPECT_EQ(ReluMulCount(got.data(), u.data(), n), want_on) << n;
      // (memcmp of n = 0 bytes still wants non-null pointers: empty vectors' data() is null.)
      EXPECT_TRUE(n == 0 || std::memcmp(got.data(), want.data(), n * sizeof(float)) == 0) << n;
    });
  }
  // By hand: -0 and NaN gates give +0; a positive gate times -0 keeps -0.
  float g[5] = {-0.0f, nan, 2.0f, 3.0f, -1.0f};
  const float up[5] = {-5.0f, 1.0f, -0.0f, 4.0f, 9.0f};
  EXPECT_EQ(ReluMulCount(g, up, 5), 2u);
  EXPECT_FALSE(std::signbit(g[0]));
  EXPECT_EQ(g[1], 0.0f);
  EXPECT_FALSE(std::signbit(g[1]));
  EXPECT_TRUE(std::signbit(g[2]));
  EXPECT_EQ(g[3], 12.0f);
  EXPECT_EQ(g[4], 0.0f);
}

}  // namespace
}  // namespace st
