#include "coordinator/placement.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace st {
namespace {

TEST(PlacementTest, NoWorkersKeepsEverythingLocal) {
  Placement p = ComputePlacement(4, 8, {}, {});
  EXPECT_EQ(p.Count(kLocalOwner), 32);
}

TEST(PlacementTest, SharesFollowSpeed) {
  // Worker 1 is three times as fast as worker 0.
  Placement p = ComputePlacement(10, 16, {{100, 1000}, {300, 1000}}, {});
  EXPECT_EQ(p.Count(kLocalOwner), 0);
  EXPECT_EQ(p.Count(0), 40);
  EXPECT_EQ(p.Count(1), 120);
  for (int l = 0; l < 10; ++l) {  // every layer is spread, not just the total
    int n0 = 0;
    for (int e = 0; e < 16; ++e) n0 += p.owner(l, e) == 0;
    EXPECT_EQ(n0, 4) << "layer " << l;
  }
}

// A worker reporting a speed that is no number (NaN, infinite, negative)
// gets no share, and the others still get theirs.
TEST(PlacementTest, ASpeedThatIsNoNumberCountsAsNone) {
  for (double bad : {std::nan(""), std::numeric_limits<double>::infinity(), -5.0}) {
    Placement p = ComputePlacement(4, 8, {{bad, 1000}, {100, 1000}}, {});
    EXPECT_EQ(p.Count(kLocalOwner), 0) << bad;
    EXPECT_EQ(p.Count(0), 0) << bad;
    EXPECT_EQ(p.Count(1), 32) << bad;
  }
}

TEST(PlacementTest, CapacityBoundsAShare) {
  // Worker 0 is fast but can hold only 5 experts; the rest goes to worker 1.
  Placement p = ComputePlacement(4, 8, {{1000, 5}, {1, 1000}}, {});
  EXPECT_EQ(p.Count(0), 5);
  EXPECT_EQ(p.Count(1), 27);
  // Nobody has room: local.
  Placement q = ComputePlacement(4, 8, {{1, 3}}, {});
  EXPECT_EQ(q.Count(0), 3);
  EXPECT_EQ(q.Count(kLocalOwner), 29);
}

TEST(PlacementTest, LocalShareAndHotExperts) {
  PlacementOptions o;
  o.local_share = 0.5;
  Placement p = ComputePlacement(2, 8, {{1, 100}}, o);
  EXPECT_EQ(p.Count(kLocalOwner), 8);
  EXPECT_EQ(p.Count(0), 8);

  PlacementOptions hot;
  hot.hot_experts_local = 2;
  hot.hot_order = {{7, 3, 0, 1, 2, 4, 5, 6}, {}};
  Placement h = ComputePlacement(2, 8, {{1, 100}}, hot);
  EXPECT_EQ(h.owner(0, 7), kLocalOwner);
  EXPECT_EQ(h.owner(0, 3), kLocalOwner);
  EXPECT_EQ(h.owner(0, 0), 0);
  EXPECT_EQ(h.owner(1, 0), kLocalOwner);  // no order known: lowest ids
  EXPECT_EQ(h.owner(1, 1), kLocalOwner);
  EXPECT_EQ(h.Count(kLocalOwner), 4);
}

TEST(PlacementTest, DownWorkersShareIsRedealtOverTheOthers) {
  // Three equal workers, worker 1 down: the other two split its experts.
  std::vector<WorkerShare> w = {{1, 1000}, {1, 1000, /*up=*/false}, {1, 1000}};
  Placement p = ComputePlacement(4, 8, w, {});
  EXPECT_EQ(p.Count(1), 0);
  EXPECT_EQ(p.Count(0), 16);
  EXPECT_EQ(p.Count(2), 16);
  EXPECT_EQ(p.Count(kLocalOwner), 0);
  // The coordinator keeps its fixed share; the survivors take the rest.
  PlacementOptions o;
  o.local_share = 0.5;
  Placement q = ComputePlacement(4, 8, w, o);
  EXPECT_EQ(q.Count(kLocalOwner), 16);
  EXPECT_EQ(q.Count(0) + q.Count(2), 16);
  // Nobody up: everything local.
  for (WorkerShare& s : w) s.up = false;
  EXPECT_EQ(ComputePlacement(4, 8, w, {}).Count(kLocalOwner), 32);
}

TEST(PlacementTest, Deterministic) {
  auto a = ComputePlacement(8, 32, {{3, 500}, {5, 500}, {2, 500}}, {});
  auto b = ComputePlacement(8, 32, {{3, 500}, {5, 500}, {2, 500}}, {});
  for (int l = 0; l < 8; ++l)
    for (int e = 0; e < 32; ++e) EXPECT_EQ(a.owner(l, e), b.owner(l, e));
}

}  // namespace
}  // namespace st
