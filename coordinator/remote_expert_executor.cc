#include "coordinator/remote_expert_executor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/cluster_config.h"
#include "coordinator/hot_order.h"
#include "expert_worker/expert_service.h"
#include "glog/logging.h"
#include "model/local_expert_executor.h"
#include "model/mapped_repack.h"
#include "model/model.h"
#include "storage/expert_pack.h"

namespace st {

namespace v1 = smallthinker::v1;

namespace {

// Requests larger than this (prefill) may need the peer's flow-control
// window updates before they are all sent: the local share is then computed
// expert by expert, polling the streams in between.
constexpr size_t kLargeRequestBytes = 32 << 10;

// ClusterConfig.rebalance_factor 0.
constexpr double kDefaultRebalanceFactor = 3;

int64_t Mean(const std::vector<int64_t>& v) {
  if (v.empty()) return 0;
  int64_t sum = 0;
  for (int64_t x : v) sum += x;
  return sum / static_cast<int64_t>(v.size());
}

int64_t Percentile(std::vector<int64_t> v, double p) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

}  // namespace


RemoteExpertExecutor::RemoteExpertExecutor(const ModelConfig& config,
                                           std::vector<ExpertStacks> stacks, uint64_t fingerprint,
                                           ThreadPool* pool, v1::ClusterConfig cluster,
                                           PlacementOptions placement)
    : config_(config),
      stacks_(std::move(stacks)),
      fingerprint_(fingerprint),
      pool_(pool),
      cluster_(std::move(cluster)),
      placement_options_(std::move(placement)),
      rebalance_factor_(cluster_.rebalance_factor() == 0 ? kDefaultRebalanceFactor
                                                         : cluster_.rebalance_factor()),
      max_message_bytes_(cluster_.max_message_bytes() > 0 ? cluster_.max_message_bytes()
                                                          : kMaxMessageBytes) {}

absl::StatusOr<std::unique_ptr<RemoteExpertExecutor>> RemoteExpertExecutor::Create(
    const ModelConfig& config, std::vector<ExpertStacks> stacks, uint64_t fingerprint,
    ThreadPool* pool, const v1::ClusterConfig& cluster, std::vector<std::vector<int>> hot_order,
    uint64_t content_sample) {
  ST_RETURN_IF_ERROR(ValidateClusterConfig(cluster));
  if (cluster.hot_experts_local() > config.n_experts) {
    return absl::InvalidArgumentError(absl::StrCat("hot_experts_local ", cluster.hot_experts_local(),
                                                   " is more than the model's ", config.n_experts,
                                                   " experts per layer"));
  }
  PlacementOptions popt;
  popt.local_share = cluster.local_share();
  popt.hot_experts_local = cluster.hot_experts_local();
  popt.hot_order = std::move(hot_order);
  std::unique_ptr<RemoteExpertExecutor> r(new RemoteExpertExecutor(
      config, std::move(stacks), fingerprint, pool, cluster, std::move(popt)));
  r->content_sample_ = content_sample;
  // One token's items must fit in a message.
  const size_t token_bytes = static_cast<size_t>(config.top_k) * config.d_model * sizeof(float) +
                             static_cast<size_t>(config.top_k) * 14 + 64;
  if (r->max_message_bytes_ < token_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes ", r->max_message_bytes_, " cannot hold one token's ", config.top_k,
        " expert outputs (", token_bytes, " bytes)"));
  }
  const int n = cluster.worker_size();
  r->workers_.resize(n);
  // A worker that does not answer at start (down, asleep, not started yet)
  // is left out and retried as a failed one is, while another answers: the
  // run goes on without it. When none answers, or one answers and refuses
  // (another model, a wrong token, a bad request, no worker service at
  // all), the configuration is wrong: the run stops, naming each.
  auto refused = [](const absl::Status& s) {
    return absl::IsFailedPrecondition(s) || absl::IsUnauthenticated(s) ||
           absl::IsInvalidArgument(s) || absl::IsResourceExhausted(s) ||
           absl::IsPermissionDenied(s) || absl::IsUnimplemented(s);
  };
  // Paired all at once: each worker that does not answer costs its call
  // deadline (3 s by default), not that many in a row.
  std::vector<absl::Status> paired(n);
  for (int i = 0; i < n; ++i) {
    r->workers_[i].client =
        std::make_unique<WorkerClient>(cluster.worker(i).address(), r->cluster_, &r->cq_);
  }
  {
    std::vector<std::thread> pairing;
    for (int i = 0; i < n; ++i) {
      pairing.emplace_back([&, i] {
        paired[i] = r->workers_[i].client->Pair(fingerprint, config, content_sample);
      });
    }
    for (std::thread& t : pairing) t.join();
  }
  for (int i = 0; i < n; ++i) {
    if (refused(paired[i])) return paired[i];
  }
  if (n > 0 && std::none_of(paired.begin(), paired.end(), [](const auto& s) { return s.ok(); })) {
    std::string why;
    for (const absl::Status& s : paired) absl::StrAppend(&why, why.empty() ? "" : "; ", s.message());
    return absl::Status(paired[0].code(), absl::StrCat(n == 1 ? "the worker did not answer: "
                                                              : "no worker answered: ",
                                                       why));
  }
  for (int i = 0; i < n; ++i) {
    std::vector<bool> before(n, false);
    for (int j = 0; j < i; ++j) before[j] = paired[j].ok();
    if (paired[i].ok()) ST_RETURN_IF_ERROR(r->NotListedTwice(i, before));
  }
  std::vector<bool> reached(n, false);
  for (int i = 0; i < n; ++i) {
    reached[i] = paired[i].ok();
    if (!reached[i]) {
      absl::MutexLock lock(&r->mu_);
      r->StartDownLocked(i, paired[i], /*answered=*/false);
    }
  }
  absl::MutexLock lock(&r->mu_);
  for (int i = 0; i < n; ++i) {
    if (reached[i]) r->DescribedLocked(i);
  }
  r->members_ = reached;
  r->assignments_ = Assignments(config.n_layers, config.n_experts, n);
  r->target_ = r->PlaceLocked(r->members_);
  for (int i = 0; i < n; ++i) {
    if (!reached[i]) continue;
    Worker& w = r->workers_[i];
    Assignments::Set set = r->assignments_.SetOf(r->target_, i);
    absl::Status s = w.client->Assign(r->assignments_.Keys(set));
    ++r->stats_.assigns;  // (counted as the supervisors' are)
    if (!s.ok()) ++r->stats_.assign_failures;
    if (s.ok()) s = w.client->OpenStream();
    if (refused(s)) return s;
    if (!s.ok()) {
      // Its experts stay with the coordinator until the first step places
      // them again without it.
      r->members_[i] = false;
      r->StartDownLocked(i, s, /*answered=*/true);
      absl::StrAppend(&r->recompute_why_, r->recompute_why_.empty() ? "" : "; ", "worker ",
                      w.client->address(), " failed its first Assign");
      continue;
    }
    r->assignments_.SetHeld(i, std::move(set));
    w.up = true;
    LOG(INFO) << "worker " << w.client->address() << " owns " << r->target_.Count(i)
              << " experts";
  }
  if (std::none_of(r->members_.begin(), r->members_.end(), [](bool m) { return m; })) {
    return absl::UnavailableError(
        "no worker took its experts at start (each failed its first Assign; see the log)");
  }
  r->route_ = r->assignments_.Route(r->target_, r->members_);
  r->route_stale_ = false;
  r->PackLocalExperts();
  r->stats_.workers_up = static_cast<int>(std::count(r->members_.begin(), r->members_.end(), true));
  r->jobs_.resize(n);
  for (int i = 0; i < n; ++i) {
    r->supervisors_.emplace_back([p = r.get(), i] { p->Supervise(i); });
  }
  return r;
}

RemoteExpertExecutor::~RemoteExpertExecutor() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  // A supervisor may be inside a Describe or an Assign to a stopped
  // worker: end it now, not at its deadline.
  for (Worker& w : workers_) {
    if (w.client) w.client->CancelCalls();
  }
  for (std::thread& t : supervisors_) t.join();
  for (Worker& w : workers_) {
    if (w.client) w.client->CloseStream();  // null if Create failed before it
  }
  cq_.Shutdown();
  void* tag;
  bool ok;
  while (cq_.Next(&tag, &ok)) {
  }
}

void RemoteExpertExecutor::PackLocalExperts() {
  std::vector<ExpertKey> keys;
  for (int l = 0; l < config_.n_layers; ++l) {
    for (int e = 0; e < config_.n_experts; ++e) {
      if (target_.owner(l, e) == kLocalOwner) keys.push_back({l, e});
    }
  }
  if (keys.empty()) return;
  const auto start = Clock::now();
  auto pack = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      const ExpertStacks& s = stacks_[keys[i].layer];
      const int e = keys[i].expert;
      // As steps compute it (a transposed down in rows, converted when in a
      // storage-only format; K-quant gates and downs packed).
      PrepareExpert({ExpertStacks::Slice(s.gate, e, s.n_experts),
                     ExpertStacks::Slice(s.up, e, s.n_experts),
                     ExpertStacks::Slice(s.down, e, s.n_experts), s.down_transposed});
    }
  };
  if (pool_ != nullptr) {
    pool_->ParallelFor(keys.size(), pack);
    pool_->Park();
  } else {
    pack(0, keys.size());
  }
  LOG(INFO) << "packed the coordinator's " << keys.size() << " experts in "
            << std::chrono::duration<double>(Clock::now() - start).count() << " s";
}

void RemoteExpertExecutor::ComputeLocal(int layer, const Routes& routes, const float* h,
                                        const std::vector<int>& items, bool poll_between) {
  if (items.empty()) return;
  // local_threads 1: the forward thread alone (the pool stays parked).
  ThreadPool* const pool = cluster_.local_threads() == 1 ? nullptr : pool_;
  const ExpertStacks& s = stacks_[layer];
  const size_t d = config_.d_model;
  const int top_k = routes.top_k;
  // items are increasing, so each group is too.
  GroupByExpert(s.n_experts, items, [&](int i) { return routes.ids[i]; }, by_expert_, used_);
  // Packed experts (or K-quant ones in rows): the step's local experts in two pool phases
  // (model/expert_phases.h), as the single-process executor runs them.
  matrices_.resize(s.n_experts);
  bool phases = true;
  for (int e : used_) {
    ExpertMatrices m{ExpertStacks::Slice(s.gate, e, s.n_experts),
                     ExpertStacks::Slice(s.up, e, s.n_experts),
                     ExpertStacks::Slice(s.down, e, s.n_experts), s.down_transposed};
    if (!m.down_transposed) m = PrepareExpert(m);
    phases = phases && ExpertPhases::Supports(m);
    matrices_[e] = m;
  }
  auto matrices = [this](int e) { return matrices_[e]; };
  for (size_t k = 0; k < used_.size(); ++k) {
    const int e = used_[k];
    if (phases && !poll_between) {
      phases_.Run(matrices, by_expert_, used_, top_k, /*slot_rows=*/nullptr, h, routes.n_tokens,
                  slot_out_.data(), pool, /*sparsity=*/nullptr);
      break;
    }
    if (phases) {
      phases_.Run(matrices, by_expert_, {e}, top_k, /*slot_rows=*/nullptr, h, routes.n_tokens,
                  slot_out_.data(), pool, /*sparsity=*/nullptr);
    } else {
      const std::vector<int>& slots = by_expert_[e];
      const int n = static_cast<int>(slots.size());
      gathered_.resize(n * d);
      expert_out_.resize(n * d);
      GatherSlotRows(h, slots, top_k, d, gathered_.data());
      LocalExpertExecutor::ComputeExpert(ExpertStacks::Slice(s.gate, e, s.n_experts),
                                         ExpertStacks::Slice(s.up, e, s.n_experts),
                                         ExpertStacks::Slice(s.down, e, s.n_experts),
                                         s.down_transposed, gathered_.data(), n,
                                         expert_out_.data(), pool);
      ScatterSlotRows(expert_out_.data(), slots, d, slot_out_.data());
    }
    // Keep the workers' streams moving (a large request needs the peer's
    // window updates) and timestamp replies that are already in.
    for (Worker& w : workers_) {
      if (w.busy) w.client->Poll();
    }
  }
}

void RemoteExpertExecutor::Prepare(int layer, const Routes& routes) {
  if (!cluster_.prefetch_hints()) return;
  std::vector<std::vector<ExpertKey>> hints(workers_.size());
  std::vector<uint8_t> seen(config_.n_experts, 0);
  for (int32_t e : routes.ids) {
    if (seen[e]) continue;
    seen[e] = 1;
    const int o = Owner(layer, e);
    if (o != kLocalOwner && workers_[o].up) hints[o].push_back({layer, e});
  }
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (!hints[i].empty()) workers_[i].client->Prefetch(hints[i]);
  }
}

absl::Status RemoteExpertExecutor::Run(int layer, const Routes& routes, const float* h,
                                       float* out) {
  const int n_tokens = routes.n_tokens, top_k = routes.top_k;
  const int n_items = n_tokens * top_k;
  const size_t d = config_.d_model;
  const Clock::time_point run_start = Clock::now();
  slot_out_.resize(static_cast<size_t>(n_items) * d);  // [n_tokens, top_k, d]

  BeginStep();  // workers back or down, placement, Assign jobs

  // Split the items by owner.
  local_items_.clear();
  for (Worker& w : workers_) w.step_items.clear();
  for (int i = 0; i < n_items; ++i) {
    const int o = Owner(layer, routes.ids[i]);
    if (o != kLocalOwner && workers_[o].up) {
      workers_[o].step_items.push_back(i);
    } else {
      local_items_.push_back(i);
    }
  }
  // One message per worker with all of its work, unless a message would
  // pass the cap (a long prompt's prefill): then several, sent in rounds,
  // one message per worker in each.
  size_t rounds = 0;
  for (Worker& w : workers_) {
    SplitIntoMessages(w, routes);
    rounds = std::max(rounds, w.messages.size());
  }

  // The pool's threads sleep from now on unless the local share wakes them:
  // the workers may need the cores (on the same host) more than our idle
  // threads spinning.
  if (pool_ != nullptr) pool_->Park();
  uint64_t bytes_sent = 0, requests = 0;
  uint64_t local = local_items_.size(), remote = 0, failover = 0, bytes_received = 0;
  uint64_t combined = 0;
  token_done_.assign(n_tokens, 0);
  std::vector<int64_t> overheads, submits, round_trips, computes, wakes;
  auto us = [](Clock::duration d) {
    return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  };
  // Round 0 overlaps with our own share; a later round only with the
  // workers' other messages.
  for (size_t round = 0; round < std::max<size_t>(rounds, 1); ++round) {
    const Clock::time_point sent = Clock::now();
    const Clock::time_point deadline = sent + std::chrono::milliseconds(StepTimeoutMs(cluster_));
    bool large_request = false, any = false;
    for (Worker& w : workers_) {
      w.busy = false;
      // A worker that failed in an earlier round is down, its rest computed.
      if (!w.up || round >= w.messages.size()) continue;
      const auto [begin, end] = w.messages[round];
      w.items.assign(w.step_items.begin() + begin, w.step_items.begin() + end);
      w.sent = Clock::now();
      v1::ComputeRequest req = BuildRequest(w, layer, routes, h);
      const size_t bytes = req.ByteSizeLong();
      bytes_sent += bytes;
      large_request = large_request || bytes > kLargeRequestBytes;
      ++requests;
      any = true;
      w.step = step_id_;
      w.client->Submit(std::move(req));
      w.submitted = Clock::now();
      w.busy = true;
    }

    if (round == 0) ComputeLocal(layer, routes, h, local_items_, /*poll_between=*/large_request);
    // Nothing to compute until the replies are in: let the pool's threads
    // sleep rather than spin on cores the workers may need.
    if (any && pool_ != nullptr) pool_->Park();

    // Every worker's reply as it comes (a slow one does not delay taking in
    // the others', and each is timed on its own).
    const Clock::time_point await_start = Clock::now();
    {
      std::vector<WorkerClient*> busy;
      for (Worker& w : workers_) {
        if (w.busy) busy.push_back(w.client.get());
      }
      WorkerClient::AwaitAll(busy, deadline, std::chrono::microseconds(cluster_.spin_us()));
    }
    const Clock::time_point await_end = Clock::now();
    Clock::time_point last_read{};
    for (const Worker& w : workers_) {
      if (w.busy) last_read = std::max(last_read, w.client->reply_time());
    }
    for (int wi = 0; wi < static_cast<int>(workers_.size()); ++wi) {
      Worker& w = workers_[wi];
      if (!w.busy) continue;
      w.busy = false;
      absl::StatusOr<const v1::ComputeResponse*> reply = w.client->Await(deadline);
      absl::Status status = reply.status();
      const size_t want = (w.combine ? w.row_token.size() : w.items.size()) * d * sizeof(float);
      if (status.ok() && ((*reply)->step_id() != w.step || (*reply)->output().size() != want)) {
        status = absl::DataLossError(absl::StrCat(
            "worker ", w.client->address(), ": reply to step ", (*reply)->step_id(), " with ",
            (*reply)->output().size(), " bytes, expected step ", w.step, " with ", want));
      }
      if (status.ok()) {
        const v1::ComputeResponse& r = **reply;
        // What the network path added: request built to reply read, minus
        // the worker's compute, plus the hand-over to this thread if it
        // waited.
        const Clock::time_point read = w.client->reply_time();
        const int64_t wake = read > await_start ? us(await_end - last_read) : 0;
        // The worker's own figure, held to what this side saw (a worker
        // reporting a negative or huge time made overheads of ~10^12 us).
        const int64_t round_trip = std::max<int64_t>(us(read - w.sent), 0);
        const int64_t compute = std::clamp<int64_t>(r.compute_us(), 0, round_trip);
        overheads.push_back(round_trip - compute + wake);
        submits.push_back(us(w.submitted - w.sent));
        round_trips.push_back(round_trip);
        computes.push_back(compute);
        wakes.push_back(wake);
        bytes_received += r.ByteSizeLong();
        const float* y = reinterpret_cast<const float*>(r.output().data());
        if (w.combine) {  // finished tokens
          for (size_t k = 0; k < w.row_token.size(); ++k) {
            const int t = w.row_token[k];
            std::memcpy(out + static_cast<size_t>(t) * d, y + k * d, d * sizeof(float));
            token_done_[t] = 1;
          }
          combined += w.row_token.size();
        } else {
          for (size_t k = 0; k < w.items.size(); ++k) {
            std::memcpy(&slot_out_[static_cast<size_t>(w.items[k]) * d], y + k * d,
                        d * sizeof(float));
          }
        }
        remote += w.items.size();
        w.speed.Add(std::chrono::duration<double>(w.client->reply_time() - w.sent).count(),
                    static_cast<int>(w.items.size()));
        ++w.ok_steps;
        continue;
      }
      MarkDown(wi, status);
      // This message's items and those of the worker's later ones.
      w.items.assign(w.step_items.begin() + w.messages[round].first, w.step_items.end());
      ComputeLocal(layer, routes, h, w.items, /*poll_between=*/large_request);
      failover += w.items.size();
      local += w.items.size();
    }
  }

  // Weighted combination in slot order of the tokens no worker combined:
  // the very function LocalExpertExecutor (and a combining worker) uses, so
  // the sums are bit-identical.
  for (int t = 0; t < n_tokens; ++t) {
    if (token_done_[t]) continue;
    const size_t first = static_cast<size_t>(t) * top_k;
    CombineRows(&routes.weights[first], &slot_out_[first * d], top_k, d, out + t * d);
  }
  CheckSpeeds();
  const Clock::time_point run_end = Clock::now();
  const int64_t between = last_run_end_ == Clock::time_point{} ? -1 : us(run_start - last_run_end_);
  last_run_end_ = run_end;

  absl::MutexLock lock(&mu_);
  stats_.remote_requests += requests;
  stats_.remote_items += remote;
  stats_.local_items += local;
  stats_.failover_items += failover;
  stats_.bytes_sent += bytes_sent;
  stats_.bytes_received += bytes_received;
  stats_.combined_tokens += combined;
  // The most recent samples only, at most kMaxTimingSamples per series: a
  // long-running server appends every layer step (and with every worker
  // down, run_us and between_us grew while overhead_us, which had bounded
  // them all, did not), and stats() copies them under mu_.
  auto append = [](std::vector<int64_t>& to, const std::vector<int64_t>& from) {
    if (to.size() + from.size() > kMaxTimingSamples) {
      to.erase(to.begin(), to.begin() + std::min(to.size(), kMaxTimingSamples / 2 + from.size()));
    }
    to.insert(to.end(), from.begin(), from.end());
  };
  append(stats_.overhead_us, overheads);
  append(stats_.submit_us, submits);
  append(stats_.round_trip_us, round_trips);
  append(stats_.compute_us, computes);
  append(stats_.wake_us, wakes);
  append(stats_.run_us, {us(run_end - run_start)});
  // Skip the first step of a generation (the gap holds prefill, sampling, ...).
  if (between >= 0 && between < 1000000) append(stats_.between_us, {between});
  return absl::OkStatus();
}

int64_t OverheadPercentile(const RemoteExpertStats& stats, double p) {
  return Percentile(stats.overhead_us, p);
}

RemoteExpertStats RemoteExpertExecutor::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

std::vector<int> RemoteExpertExecutor::OwnedCounts() const {
  std::vector<int> counts(workers_.size(), 0);
  for (int o : route_) {
    if (o != kLocalOwner && workers_[o].up) ++counts[o];
  }
  return counts;
}

std::string RemoteExpertExecutor::Summary() const {
  const RemoteExpertStats s = stats();
  return absl::StrCat("cluster: ", s.workers_up, "/", workers_.size(), " workers up, ", s.steps,
                      " layer steps, ", s.remote_items, " remote + ", s.local_items,
                      " local expert items, ", s.combined_tokens, " token rows combined by workers, ",
                      s.failovers, " failovers (", s.timeouts,
                      " timeouts, ", s.failover_items, " items recomputed), ", s.readmissions,
                      " re-admissions, ", s.placements, " placement recomputes (", s.rebalances,
                      " for speed), ", s.assigns, " assigns (", s.assign_failures, " failed), ",
                      s.bytes_sent + s.bytes_received,
                      " bytes on the wire, step overhead p50 ", Percentile(s.overhead_us, 0.5),
                      " us p99 ", Percentile(s.overhead_us, 0.99), " us (p50s: submit ",
                      Percentile(s.submit_us, 0.5), " us, round trip ",
                      Percentile(s.round_trip_us, 0.5), " us, worker compute ",
                      Percentile(s.compute_us, 0.5), " us, wake ", Percentile(s.wake_us, 0.5),
                      " us; means: overhead ", Mean(s.overhead_us), " us, round trip ",
                      Mean(s.round_trip_us), " us, worker compute ", Mean(s.compute_us),
                      " us, step ", Mean(s.run_us), " us, between steps ", Mean(s.between_us),
                      " us)");
}

absl::StatusOr<RemoteExpertExecutor*> AttachWorkers(Model& model, const v1::ClusterConfig& cluster) {
  ST_ASSIGN_OR_RETURN(std::vector<ExpertStacks> stacks,
                      LoadExpertStacks(model.file(), model.config()));
  const uint64_t fingerprint = GgufFingerprint(model.file());
  // Hot experts from recorded routing counts, if any.
  const bool explicit_stats = !cluster.expert_stats().empty();
  const std::string stats_path =
      explicit_stats ? cluster.expert_stats() : DefaultStatsPathForModel(model.path());
  std::vector<std::vector<int>> hot_order;
  absl::StatusOr<std::vector<std::vector<int>>> loaded =
      LoadHotOrder(stats_path, fingerprint, model.config());
  if (loaded.ok()) {
    hot_order = *std::move(loaded);
    LOG(INFO) << "placement: hot experts from " << stats_path;
  } else if (explicit_stats) {
    return absl::Status(loaded.status().code(),
                        absl::StrCat("cluster expert_stats: ", loaded.status().message()));
  } else if (!absl::IsNotFound(loaded.status())) {
    LOG(WARNING) << "placement: ignoring expert stats: " << loaded.status();
  }
  ST_ASSIGN_OR_RETURN(std::unique_ptr<RemoteExpertExecutor> remote,
                      RemoteExpertExecutor::Create(model.config(), std::move(stacks), fingerprint,
                                                   &model.pool(), cluster, std::move(hot_order),
                                                   GgufContentSample(model.file())));
  RemoteExpertExecutor* raw = remote.get();
  model.WrapExperts([&](std::unique_ptr<ExpertExecutor> local) -> std::unique_ptr<ExpertExecutor> {
    remote->Keep(std::move(local));
    return std::move(remote);
  });
  return raw;
}

}  // namespace st
