#include "coordinator/worker_speed.h"

#include "gtest/gtest.h"

namespace st {
namespace {

TEST(SpeedMeterTest, MedianIgnoresOutliers) {
  SpeedMeter m;
  for (int i = 0; i < SpeedMeter::kMinSamples - 1; ++i) m.Add(0.001, 2);  // 2000 items/s
  EXPECT_EQ(m.ItemsPerSecond(), 0) << "not enough samples yet";
  m.Add(1.0, 1);  // one descheduled step
  EXPECT_DOUBLE_EQ(m.ItemsPerSecond(), 2000);
  m.Reset();
  EXPECT_EQ(m.ItemsPerSecond(), 0);
}

TEST(RebalanceTest, MovesSharesOnlyPastTheFactor) {
  // Measured within a factor 3 of the placed shares: keep.
  EXPECT_FALSE(Rebalanced({100, 100}, {1000, 500}, 3));
  // Worker 1 is 10x slower than placement assumes: new speeds in the
  // measured proportion, same total.
  auto next = Rebalanced({100, 100}, {1000, 100}, 3);
  ASSERT_TRUE(next);
  EXPECT_NEAR((*next)[0], 200.0 * 10 / 11, 1e-9);
  EXPECT_NEAR((*next)[1], 200.0 / 11, 1e-9);
  // Unmeasured workers (0) keep their speed; one measured worker alone
  // cannot be compared.
  next = Rebalanced({100, 100, 50}, {1000, 100, 0}, 3);
  ASSERT_TRUE(next);
  EXPECT_EQ((*next)[2], 50);
  EXPECT_FALSE(Rebalanced({100, 100}, {1000, 0}, 3));
  // Off (factor <= 1).
  EXPECT_FALSE(Rebalanced({100, 100}, {1000, 1}, 0));
  // Once rebalanced, the same measurements are within the factor.
  next = Rebalanced({100, 100}, {1000, 100}, 3);
  EXPECT_FALSE(Rebalanced(*next, {1000, 100}, 3));
}

}  // namespace
}  // namespace st
