#include "coordinator/assignments.h"

namespace st {

Assignments::Assignments(int n_layers, int n_experts, int n_workers)
    : n_layers_(n_layers), n_experts_(n_experts), workers_(n_workers) {
  for (State& s : workers_) s.held.assign(static_cast<size_t>(n_layers) * n_experts, 0);
}

void Assignments::SetHeld(int w, Set held) {
  State& s = workers_[w];
  s.held = std::move(held);
  s.pending.clear();
  s.in_flight = false;
  ++s.generation;
}

void Assignments::Clear(int w) { SetHeld(w, Set(workers_[w].held.size(), 0)); }

Assignments::Set Assignments::SetOf(const Placement& p, int w) const {
  Set set(static_cast<size_t>(n_layers_) * n_experts_, 0);
  for (int l = 0; l < n_layers_; ++l) {
    for (int e = 0; e < n_experts_; ++e) {
      set[static_cast<size_t>(l) * n_experts_ + e] = p.owner(l, e) == w;
    }
  }
  return set;
}

std::vector<ExpertKey> Assignments::Keys(const Set& s) const {
  std::vector<ExpertKey> keys;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i]) keys.push_back({static_cast<int>(i / n_experts_), static_cast<int>(i % n_experts_)});
  }
  return keys;
}

std::vector<Assignments::Job> Assignments::Plan(const Placement& target,
                                                const std::vector<bool>& up) {
  std::vector<Job> jobs;
  for (int w = 0; w < static_cast<int>(workers_.size()); ++w) {
    State& s = workers_[w];
    if (!up[w] || s.in_flight) continue;
    Set want = SetOf(target, w);
    if (want == s.held) continue;
    s.in_flight = true;
    s.pending = std::move(want);
    jobs.push_back({w, s.generation, Keys(s.pending)});
  }
  return jobs;
}

void Assignments::Done(const Job& job, bool ok) {
  State& s = workers_[job.worker];
  if (job.generation != s.generation || !s.in_flight) return;
  if (ok) {
    s.held = std::move(s.pending);
  } else {
    for (size_t i = 0; i < s.held.size(); ++i) s.held[i] &= s.pending[i];
  }
  s.pending.clear();
  s.in_flight = false;
}

std::vector<int> Assignments::Route(const Placement& target, const std::vector<bool>& up) const {
  std::vector<int> route(static_cast<size_t>(n_layers_) * n_experts_, kLocalOwner);
  for (int l = 0; l < n_layers_; ++l) {
    for (int e = 0; e < n_experts_; ++e) {
      const int w = target.owner(l, e);
      if (w == kLocalOwner || !up[w]) continue;
      const size_t i = static_cast<size_t>(l) * n_experts_ + e;
      const State& s = workers_[w];
      if (s.held[i] && (!s.in_flight || s.pending[i])) route[i] = w;
    }
  }
  return route;
}

bool Assignments::Settled(const Placement& target, const std::vector<bool>& up) const {
  for (int w = 0; w < static_cast<int>(workers_.size()); ++w) {
    if (!up[w]) continue;
    if (workers_[w].in_flight || workers_[w].held != SetOf(target, w)) return false;
  }
  return true;
}

}  // namespace st
