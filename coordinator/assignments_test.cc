#include "coordinator/assignments.h"

#include "gtest/gtest.h"

namespace st {
namespace {

int Count(const std::vector<int>& route, int w) {
  return static_cast<int>(std::count(route.begin(), route.end(), w));
}

// Two workers; worker 1 goes down and worker 0 takes over its experts.
TEST(AssignmentsTest, GainedExpertsStayLocalUntilTheAssignSucceeded) {
  const std::vector<WorkerShare> both = {{1, 100}, {1, 100}};
  const Placement home = ComputePlacement(2, 4, both, {});
  Assignments a(2, 4, 2);
  a.SetHeld(0, a.SetOf(home, 0));
  a.SetHeld(1, a.SetOf(home, 1));
  std::vector<bool> up = {true, true};
  EXPECT_TRUE(a.Settled(home, up));
  EXPECT_TRUE(a.Plan(home, up).empty());
  EXPECT_EQ(Count(a.Route(home, up), 0), 4);
  EXPECT_EQ(Count(a.Route(home, up), 1), 4);

  up[1] = false;
  a.Clear(1);
  const Placement one = ComputePlacement(2, 4, {{1, 100}, {1, 100, false}}, {});
  ASSERT_EQ(one.Count(0), 8);
  std::vector<Assignments::Job> jobs = a.Plan(one, up);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].worker, 0);
  EXPECT_EQ(jobs[0].experts.size(), 8u);
  EXPECT_TRUE(a.Plan(one, up).empty()) << "one Assign in flight per worker";
  // In flight: worker 0 keeps the 4 it holds, the 4 gained stay local.
  std::vector<int> route = a.Route(one, up);
  EXPECT_EQ(Count(route, 0), 4);
  EXPECT_EQ(Count(route, kLocalOwner), 4);
  EXPECT_FALSE(a.Settled(one, up));
  a.Done(jobs[0], /*ok=*/true);
  EXPECT_EQ(Count(a.Route(one, up), 0), 8);
  EXPECT_TRUE(a.Settled(one, up));

  // Worker 1 back (admitted holding its home share): worker 0 shrinks at
  // once, before its Assign has even been sent.
  up[1] = true;
  a.SetHeld(1, a.SetOf(home, 1));
  jobs = a.Plan(home, up);
  ASSERT_EQ(jobs.size(), 1u);
  route = a.Route(home, up);
  EXPECT_EQ(Count(route, 0), 4);
  EXPECT_EQ(Count(route, 1), 4);
}

TEST(AssignmentsTest, FailedOrStaleJobsAreSafe) {
  const Placement p = ComputePlacement(1, 4, {{1, 100}}, {});
  Assignments a(1, 4, 1);
  Assignments::Set two = {1, 1, 0, 0};
  a.SetHeld(0, two);
  std::vector<bool> up = {true};
  std::vector<Assignments::Job> jobs = a.Plan(p, up);
  ASSERT_EQ(jobs.size(), 1u);
  a.Done(jobs[0], /*ok=*/false);  // holds {0,1} or {0,1,2,3}: rely on {0,1}
  EXPECT_EQ(Count(a.Route(p, up), 0), 2);
  // A job from before the worker went down is ignored.
  jobs = a.Plan(p, up);
  ASSERT_EQ(jobs.size(), 1u);
  a.Clear(0);
  a.Done(jobs[0], true);
  EXPECT_EQ(Count(a.Route(p, up), 0), 0);
}

}  // namespace
}  // namespace st
