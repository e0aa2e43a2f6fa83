// RemoteExpertExecutor, the membership half: which workers are up, the
// placement over them and the workers' Assigns (main thread at step
// boundaries, a supervisor thread per worker for its RPCs). The step itself is in
// remote_expert_executor.cc.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/remote_expert_executor.h"
#include "glog/logging.h"
#include "model/mapped_repack.h"

namespace st {

namespace v1 = smallthinker::v1;

namespace {

int BackoffMinMs(const v1::ClusterConfig& c) {
  return c.readmit_backoff_min_ms() > 0 ? c.readmit_backoff_min_ms() : 200;
}
int BackoffMaxMs(const v1::ClusterConfig& c) {
  return c.readmit_backoff_max_ms() > 0 ? c.readmit_backoff_max_ms() : 10000;
}

// Replies after which a re-admitted worker counts as healthy again.
constexpr int kSteadySteps = 64;

}  // namespace

void RemoteExpertExecutor::DescribedLocked(int i) {
  Worker& w = workers_[i];
  const v1::DescribeResponse& d = w.client->description();
  w.placed_speed = d.expert_tokens_per_second();
  w.capacity_experts = d.expert_bytes() > 0 ? d.capacity_bytes() / d.expert_bytes() : 0;
}

Placement RemoteExpertExecutor::PlaceLocked(const std::vector<bool>& members) const {
  std::vector<WorkerShare> shares;
  for (size_t i = 0; i < workers_.size(); ++i) {
    shares.push_back({workers_[i].placed_speed, workers_[i].capacity_experts, members[i]});
  }
  return ComputePlacement(config_.n_layers, config_.n_experts, shares, placement_options_);
}

std::string RemoteExpertExecutor::DescribeLocked(const Placement& p) const {
  std::string s = absl::StrCat("coordinator ", p.Count(kLocalOwner));
  for (size_t i = 0; i < workers_.size(); ++i) {
    absl::StrAppend(&s, ", ", workers_[i].client->address(), " ", p.Count(static_cast<int>(i)),
                    members_[i] ? "" : " (down)");
  }
  return s;
}

void RemoteExpertExecutor::RecomputeLocked(const std::string& why) {
  target_ = PlaceLocked(members_);
  ++stats_.placements;
  route_stale_ = true;
  LOG(INFO) << "placement recomputed (" << why << "): experts per owner: " << DescribeLocked(target_);
}

absl::Status RemoteExpertExecutor::Admit(int i) {
  WorkerClient& c = *workers_[i].client;
  ST_RETURN_IF_ERROR(c.Pair(fingerprint_, config_, content_sample_));
  // A worker whose calls take half the step deadline or more (behind a slow
  // link, say) would time out on its first steps, each time stalling every
  // request for the whole deadline: it stays down, its backoff growing,
  // until it answers in time (before Assign, which would make it load its
  // share for nothing).
  ST_ASSIGN_OR_RETURN(const std::chrono::microseconds round_trip, c.RoundTrip());
  const auto half_deadline = std::chrono::milliseconds(StepTimeoutMs(cluster_)) / 2;
  if (round_trip >= half_deadline) {
    // (No measured time in the message: the supervisor logs a reason again
    // only when it changes.)
    VLOG(1) << "worker " << c.address() << " answered in " << round_trip.count() << " us";
    return absl::DeadlineExceededError(absl::StrCat(
        "worker ", c.address(), " takes half the step deadline (", StepTimeoutMs(cluster_) / 2,
        " of ", StepTimeoutMs(cluster_), " ms) or more to answer a call: its steps would time "
        "out, so it stays down until it answers faster"));
  }
  Assignments::Set set;
  std::vector<ExpertKey> keys;
  {
    absl::MutexLock lock(&mu_);
    // Not another listed address of a worker already in (both down at
    // start, say).
    std::vector<bool> in(workers_.size());
    for (size_t j = 0; j < workers_.size(); ++j) in[j] = members_[j] || workers_[j].ready;
    ST_RETURN_IF_ERROR(NotListedTwice(i, in));
    DescribedLocked(i);
    std::vector<bool> members = members_;
    members[i] = true;
    set = assignments_.SetOf(PlaceLocked(members), i);
    keys = assignments_.Keys(set);
  }
  const absl::Status assigned = c.Assign(keys);
  {
    absl::MutexLock lock(&mu_);
    ++stats_.assigns;
    if (!assigned.ok()) ++stats_.assign_failures;
  }
  ST_RETURN_IF_ERROR(assigned);
  ST_RETURN_IF_ERROR(c.OpenStream());
  absl::MutexLock lock(&mu_);
  workers_[i].admitted = std::move(set);
  return absl::OkStatus();
}

void RemoteExpertExecutor::MarkDown(int i, const absl::Status& why) {
  Worker& w = workers_[i];
  w.up = false;
  // Here, not by the supervisor: the stream's completions come on the queue
  // the forward pass polls.
  w.client->CloseStream();
  // An Assign its supervisor has in flight to it (a stalled worker would
  // hold the supervisor, and its own re-admission, for the Assign's
  // deadline) ends now.
  w.client->Interrupt();
  w.speed.Reset();
  LOG(WARNING) << "worker " << w.client->address() << " failed (" << why
               << "); recomputing its experts locally and marking it down";
  absl::MutexLock lock(&mu_);
  ++stats_.failovers;
  if (absl::IsDeadlineExceeded(why)) ++stats_.timeouts;
  stats_.workers_up = static_cast<int>(
      std::count_if(workers_.begin(), workers_.end(), [](const Worker& x) { return x.up; }));
  // A worker that fails again soon after coming back waits longer each time.
  w.backoff_ms = w.ok_steps >= kSteadySteps || w.backoff_ms == 0
                     ? BackoffMinMs(cluster_)
                     : std::min(w.backoff_ms * 2, BackoffMaxMs(cluster_));
  w.ok_steps = 0;
  w.next_attempt = Clock::now() + std::chrono::milliseconds(w.backoff_ms);
  w.ready = false;
  w.assign_error = absl::OkStatus();
  members_[i] = false;
  assignments_.Clear(i);
  route_stale_ = true;
  absl::StrAppend(&recompute_why_, recompute_why_.empty() ? "" : "; ", "worker ",
                  w.client->address(), " down");
  down_.insert(i);
}

absl::Status RemoteExpertExecutor::NotListedTwice(int i, const std::vector<bool>& others) const {
  const uint64_t id = workers_[i].client->description().instance_id();
  for (size_t j = 0; j < workers_.size() && id != 0; ++j) {
    if (static_cast<int>(j) == i || !others[j]) continue;
    if (workers_[j].client->description().instance_id() == id) {
      return absl::InvalidArgumentError(absl::StrCat(
          "workers ", workers_[j].client->address(), " and ", workers_[i].client->address(),
          " are one worker process (the same instance id): list each worker once"));
    }
  }
  return absl::OkStatus();
}

void RemoteExpertExecutor::StartDownLocked(int i, const absl::Status& why, bool answered) {
  Worker& w = workers_[i];
  w.up = false;
  w.backoff_ms = BackoffMinMs(cluster_);
  w.next_attempt = Clock::now() + std::chrono::milliseconds(w.backoff_ms);
  w.admit_error = why;  // its supervisor says more only if the reason changes
  down_.insert(i);
  LOG(WARNING) << "worker " << w.client->address()
               << (answered ? " failed its first Assign (" : " did not answer at start (") << why
               << "): running without it, and retrying every " << BackoffMaxMs(cluster_)
               << " ms at most";
}

void RemoteExpertExecutor::BeginStep() {
  std::vector<std::pair<int, absl::Status>> failed;
  {
    absl::MutexLock lock(&mu_);
    ++stats_.steps;
    for (int i = 0; i < static_cast<int>(workers_.size()); ++i) {
      Worker& w = workers_[i];
      if (w.ready) {  // the supervisor brought it back: it joins now
        w.ready = false;
        w.up = true;
        members_[i] = true;
        assignments_.SetHeld(i, std::move(w.admitted));
        ++stats_.readmissions;
        absl::StrAppend(&recompute_why_, recompute_why_.empty() ? "" : "; ", "worker ",
                        w.client->address(), " re-admitted");
      }
      if (!w.assign_error.ok()) failed.emplace_back(i, std::exchange(w.assign_error, {}));
    }
  }
  for (auto& [i, why] : failed) {
    if (workers_[i].up) MarkDown(i, why);
  }
  {
    absl::MutexLock lock(&mu_);
    stats_.workers_up = static_cast<int>(
        std::count_if(workers_.begin(), workers_.end(), [](const Worker& x) { return x.up; }));
    if (!recompute_why_.empty()) RecomputeLocked(std::exchange(recompute_why_, {}));
    if (!route_stale_) return;
    std::vector<Assignments::Job> jobs = assignments_.Plan(target_, members_);
    for (Assignments::Job& job : jobs) jobs_[job.worker].push_back(std::move(job));
    route_ = assignments_.Route(target_, members_);
    route_stale_ = false;
  }
  DropRemoteCopies();
}

void RemoteExpertExecutor::DropRemoteCopies() {
  // Between steps: no local expert computation reads a copy now.
  size_t dropped = 0;
  for (int l = 0; l < config_.n_layers; ++l) {
    const ExpertStacks& s = stacks_[l];
    for (int e = 0; e < config_.n_experts; ++e) {
      if (route_[static_cast<size_t>(l) * config_.n_experts + e] == kLocalOwner) continue;
      dropped += DropPackedCopy(ExpertStacks::Slice(s.gate, e, s.n_experts));
      dropped += DropPackedCopy(ExpertStacks::Slice(s.up, e, s.n_experts));
      dropped += DropPackedCopy(ExpertStacks::Slice(s.down, e, s.n_experts));
    }
  }
  if (dropped == 0) return;
  malloc_trim(0);  // give them back to the system, not only to malloc
  VLOG(1) << "freed " << dropped << " bytes of packed copies of experts workers compute now";
}

void RemoteExpertExecutor::CheckSpeeds() {
  if (rebalance_factor_ <= 1) return;
  std::vector<double> measured(workers_.size(), 0);
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (workers_[i].up) measured[i] = workers_[i].speed.ItemsPerSecond();
  }
  absl::MutexLock lock(&mu_);
  std::vector<double> placed(workers_.size(), 0);
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (workers_[i].up) placed[i] = workers_[i].placed_speed;
  }
  std::optional<std::vector<double>> next = Rebalanced(placed, measured, rebalance_factor_);
  if (!next) return;
  std::string why = "measured speed, items/s:";
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (!workers_[i].up) continue;
    absl::StrAppend(&why, " ", workers_[i].client->address(), " ",
                    static_cast<int64_t>(measured[i]));
    workers_[i].placed_speed = (*next)[i];
    workers_[i].speed.Reset();  // the next verdict needs fresh replies
  }
  ++stats_.rebalances;
  RecomputeLocked(why);
}

void RemoteExpertExecutor::Supervise(int i) {
  while (true) {
    bool due = false;
    std::vector<Assignments::Job> jobs;
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this, i]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || !jobs_[i].empty();
      };
      mu_.AwaitWithTimeout(absl::Condition(&wake), absl::Milliseconds(20));
      if (stop_) return;
      jobs.swap(jobs_[i]);
      due = down_.count(i) > 0 && Clock::now() >= workers_[i].next_attempt;
    }
    for (const Assignments::Job& job : jobs) RunAssign(job);
    if (!due) continue;
    absl::Status s = Admit(i);
    absl::MutexLock lock(&mu_);
    Worker& w = workers_[i];
    if (s.ok()) {
      down_.erase(i);
      w.ready = true;
      w.admit_error = absl::OkStatus();
      LOG(INFO) << "worker " << w.client->address() << " re-admitted";
    } else {
      w.backoff_ms = std::min(w.backoff_ms * 2, BackoffMaxMs(cluster_));
      w.next_attempt = Clock::now() + std::chrono::milliseconds(w.backoff_ms);
      // A worker restarted on another model or with another token is
      // retried forever: say why once, and again whenever the reason
      // changes, not at every attempt.
      if (s != w.admit_error) {
        LOG(WARNING) << "worker " << w.client->address() << " not back yet (retrying every "
                     << BackoffMaxMs(cluster_) << " ms at most): " << s;
      } else {
        VLOG(1) << "worker " << w.client->address() << " not back yet: " << s;
      }
      w.admit_error = s;
    }
  }
}

void RemoteExpertExecutor::RunAssign(const Assignments::Job& job) {
  {  // Skip jobs of a worker that went down since.
    absl::MutexLock lock(&mu_);
    if (!members_[job.worker]) return;
  }
  const absl::Status s = workers_[job.worker].client->Assign(job.experts);
  absl::MutexLock lock(&mu_);
  Worker& w = workers_[job.worker];
  ++stats_.assigns;
  assignments_.Done(job, s.ok());
  route_stale_ = true;
  if (s.ok()) {
    LOG(INFO) << "worker " << w.client->address() << " now holds " << job.experts.size()
              << " experts";
    return;
  }
  ++stats_.assign_failures;
  LOG(WARNING) << "worker " << w.client->address() << ": " << s;
  if (members_[job.worker]) w.assign_error = s;
}

}  // namespace st
