#include "kernels/activation.h"

#include "gtest/gtest.h"

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

}  // namespace
}  // namespace st
