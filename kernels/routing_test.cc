#include "kernels/routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/test_util.h"

namespace st {
namespace {

TEST(RoutingTest, SelectTopKTiesGoToLowerIndex) {
  const float logits[] = {1.0f, 3.0f, 3.0f, 2.0f, 3.0f, -1.0f};
  int ids[4];
  SelectTopK(logits, 6, 3, ids);
  EXPECT_EQ(std::vector<int>(ids, ids + 3), (std::vector<int>{1, 2, 4}));
  SelectTopK(logits, 6, 4, ids);
  EXPECT_EQ(std::vector<int>(ids, ids + 4), (std::vector<int>{1, 2, 4, 3}));
  SelectTopK(logits, 6, 1, ids);
  EXPECT_EQ(ids[0], 1);
  const float equal[] = {0.5f, 0.5f, 0.5f, 0.5f};
  SelectTopK(equal, 4, 4, ids);
  EXPECT_EQ(std::vector<int>(ids, ids + 4), (std::vector<int>{0, 1, 2, 3}));
}

TEST(RoutingTest, SelectTopKSkipsNan) {
  const float logits[] = {NAN, -5.0f, 1.0f};
  int ids[2];
  SelectTopK(logits, 3, 2, ids);
  EXPECT_EQ(ids[0], 2);
  EXPECT_EQ(ids[1], 1);
}

TEST(RoutingTest, SelectTopKMatchesStableSort) {
  std::vector<float> logits = testing::Gaussian(64, 17);
  // Quantize to create many ties.
  for (float& l : logits) l = std::round(l * 4.0f) / 4.0f;
  std::vector<int> order(64);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  for (int k : {1, 4, 6, 8, 64}) {
    std::vector<int> ids(k);
    SelectTopK(logits.data(), 64, k, ids.data());
    EXPECT_EQ(ids, std::vector<int>(order.begin(), order.begin() + k)) << k;
  }
}

TEST(RoutingTest, GatingSigmoidByHand) {
  const float logits[] = {std::log(3.0f), 5.0f, 0.0f};
  const int ids[] = {0, 2};
  float w[2];
  // sigmoid(ln 3) = 0.75, sigmoid(0) = 0.5 -> 0.6, 0.4.
  GatingWeights(Gating::kSigmoid, logits, ids, 2, w);
  EXPECT_NEAR(w[0], 0.6f, 1e-6f);
  EXPECT_NEAR(w[1], 0.4f, 1e-6f);
}

TEST(RoutingTest, GatingSoftmaxByHand) {
  const float logits[] = {std::log(3.0f), 5.0f, 0.0f};
  const int ids[] = {0, 2};
  float w[2];
  // exp: 3 and 1 -> 0.75, 0.25 (softmax restricted to the selected logits).
  GatingWeights(Gating::kSoftmax, logits, ids, 2, w);
  EXPECT_NEAR(w[0], 0.75f, 1e-6f);
  EXPECT_NEAR(w[1], 0.25f, 1e-6f);
  // Large logits do not overflow (max subtraction).
  const float big[] = {1000.0f, 1000.0f};
  const int both[] = {0, 1};
  GatingWeights(Gating::kSoftmax, big, both, 2, w);
  EXPECT_FLOAT_EQ(w[0], 0.5f);
  EXPECT_FLOAT_EQ(w[1], 0.5f);
}

TEST(RoutingTest, GatingDenominatorIsClamped) {
  // sigmoid(-30) ~ 9.36e-14; the sum is far below 6.1035e-5, so the weights
  // are sigmoid / 6.1035e-5 instead of 0.5 each.
  const float logits[] = {-30.0f, -30.0f};
  const int ids[] = {0, 1};
  float w[2];
  GatingWeights(Gating::kSigmoid, logits, ids, 2, w);
  const float s = 1.0f / (1.0f + std::exp(30.0f));
  EXPECT_NEAR(w[0], s / 6.1035e-5f, 1e-6f * s / 6.1035e-5f);
  EXPECT_LT(w[0] + w[1], 1e-8f);
}

}  // namespace
}  // namespace st
