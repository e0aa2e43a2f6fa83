// What each worker has been told to hold (Assign) and what it is being told
// now, so a placement change never sends a worker work it does not hold.
//
// A worker's set moves from `held` to `pending` through one Assign call that
// runs off the decode thread. While it is in flight the worker holds one of
// the two sets, so it is only sent experts in both; experts it gains are
// computed by the coordinator until the Assign succeeded, experts it loses
// stop at once. Route() gives the owner of every (layer, expert) under that
// rule.
//
// Thread-compatible: the caller (RemoteExpertExecutor) guards it.
#pragma once

#include <cstdint>
#include <vector>

#include "coordinator/placement.h"
#include "expert_worker/expert_store.h"

namespace st {

class Assignments {
 public:
  using Set = std::vector<uint8_t>;  // [n_layers * n_experts], 1 = in the set

  struct Job {
    int worker = 0;
    uint64_t generation = 0;  // Done() ignores a job from an older generation
    std::vector<ExpertKey> experts;
  };

  Assignments() = default;
  Assignments(int n_layers, int n_experts, int n_workers);

  // Worker w holds exactly `held` (its Assign succeeded outside of a Job, at
  // admission). Drops any job in flight.
  void SetHeld(int w, Set held);
  // Worker w is down: we rely on nothing it holds. Drops any job in flight.
  void Clear(int w);
  // For every up worker whose held set differs from its share of `target`
  // and has no Assign in flight: records the target set as pending and
  // returns a job for it.
  std::vector<Job> Plan(const Placement& target, const std::vector<bool>& up);
  // The job's Assign succeeded (the worker now holds the pending set) or
  // failed (it holds one of the two: only their intersection is relied on).
  void Done(const Job& job, bool ok);
  // Owner of every (layer, expert) index: the target owner if it is up,
  // holds the expert and keeps it under a pending Assign; else kLocalOwner.
  std::vector<int> Route(const Placement& target, const std::vector<bool>& up) const;
  // Every up worker holds exactly its target set and no Assign is in flight.
  bool Settled(const Placement& target, const std::vector<bool>& up) const;

  // Worker w's share of `p` as a set / as keys.
  Set SetOf(const Placement& p, int w) const;
  std::vector<ExpertKey> Keys(const Set& s) const;

 private:
  struct State {
    Set held, pending;
    bool in_flight = false;
    uint64_t generation = 0;
  };
  int n_layers_ = 0, n_experts_ = 0;
  std::vector<State> workers_;
};

}  // namespace st
