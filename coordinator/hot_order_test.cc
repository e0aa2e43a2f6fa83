#include "coordinator/hot_order.h"

#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

TEST(HotOrderTest, MostRoutedFirstTiesByLowerId) {
  ExpertStats s{.fingerprint = 1, .n_layers = 2, .n_experts = 4,
                .counts = {0, 5, 9, 5,  /* layer 1 */ 1, 1, 1, 1}};
  const auto order = HotOrder(s);
  ASSERT_EQ(order.size(), 2u);
  EXPECT_EQ(order[0], (std::vector<int>{2, 1, 3, 0}));
  EXPECT_EQ(order[1], (std::vector<int>{0, 1, 2, 3}));
}

TEST(HotOrderTest, LoadsAFileAndRefusesAnotherModel) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/m.gguf.stpack.stats";
  ModelConfig config;
  config.n_layers = 1;
  config.n_experts = 3;
  EXPECT_TRUE(absl::IsNotFound(LoadHotOrder(path, 7, config).status()));
  ASSERT_TRUE(SaveExpertStats(path, {.fingerprint = 7, .n_layers = 1, .n_experts = 3,
                                     .counts = {1, 2, 3}})
                  .ok());
  auto order = LoadHotOrder(path, 7, config);
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ((*order)[0], (std::vector<int>{2, 1, 0}));
  auto other = LoadHotOrder(path, 8, config);
  EXPECT_TRUE(absl::IsInvalidArgument(other.status())) << other.status();
  EXPECT_NE(other.status().message().find(path), std::string::npos);
  EXPECT_EQ(DefaultStatsPathForModel("/x/m.gguf"), "/x/m.gguf.stpack.stats");
}

}  // namespace
}  // namespace st
