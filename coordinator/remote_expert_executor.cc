#include "coordinator/remote_expert_executor.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "model/local_expert_executor.h"
#include "model/model.h"
#include "storage/expert_pack.h"

namespace st {

namespace v1 = smallthinker::v1;

namespace {

int StepTimeoutMs(const v1::ClusterConfig& c) {
  return c.step_timeout_ms() > 0 ? c.step_timeout_ms() : 2000;
}
int BackoffMinMs(const v1::ClusterConfig& c) {
  return c.readmit_backoff_min_ms() > 0 ? c.readmit_backoff_min_ms() : 200;
}
int BackoffMaxMs(const v1::ClusterConfig& c) {
  return c.readmit_backoff_max_ms() > 0 ? c.readmit_backoff_max_ms() : 10000;
}

// Replies after which a re-admitted worker counts as healthy again.
constexpr int kSteadySteps = 64;

int64_t Percentile(std::vector<int64_t> v, double p) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

}  // namespace


RemoteExpertExecutor::RemoteExpertExecutor(const ModelConfig& config,
                                           std::vector<ExpertStacks> stacks, uint64_t fingerprint,
                                           ThreadPool* pool, v1::ClusterConfig cluster)
    : config_(config),
      stacks_(std::move(stacks)),
      fingerprint_(fingerprint),
      pool_(pool),
      cluster_(std::move(cluster)) {}

absl::StatusOr<std::unique_ptr<RemoteExpertExecutor>> RemoteExpertExecutor::Create(
    const ModelConfig& config, std::vector<ExpertStacks> stacks, uint64_t fingerprint,
    ThreadPool* pool, const v1::ClusterConfig& cluster) {
  if (cluster.worker_size() == 0) return absl::InvalidArgumentError("no workers configured");
  if (cluster.local_share() < 0 || cluster.local_share() >= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("local_share ", cluster.local_share(), " outside [0, 1)"));
  }
  std::unique_ptr<RemoteExpertExecutor> r(
      new RemoteExpertExecutor(config, std::move(stacks), fingerprint, pool, cluster));
  r->workers_.resize(cluster.worker_size());
  for (int i = 0; i < cluster.worker_size(); ++i) {
    r->workers_[i].client = std::make_unique<WorkerClient>(cluster.worker(i).address(), r->cluster_);
    absl::Status s = r->workers_[i].client->Pair(fingerprint, config);
    // Transport-level failures (not an answer of the worker's service).
    if (!s.ok() && !absl::IsFailedPrecondition(s) && !absl::IsUnauthenticated(s) &&
        !absl::IsInvalidArgument(s) && !absl::IsResourceExhausted(s)) {
      s = absl::Status(s.code(), absl::StrCat(s.message(),
                                              " (is the worker running at that address, and do "
                                              "both sides agree on TLS?)"));
    }
    ST_RETURN_IF_ERROR(s);
  }
  // Placement over the paired workers.
  std::vector<WorkerShare> shares;
  for (const Worker& w : r->workers_) {
    const v1::DescribeResponse& d = w.client->description();
    shares.push_back({d.expert_tokens_per_second(),
                      d.expert_bytes() > 0 ? d.capacity_bytes() / d.expert_bytes() : 0});
  }
  PlacementOptions popt;
  popt.local_share = cluster.local_share();
  popt.hot_experts_local = cluster.hot_experts_local();
  r->home_ = ComputePlacement(config.n_layers, config.n_experts, shares, popt);
  for (int i = 0; i < static_cast<int>(r->workers_.size()); ++i) {
    ST_RETURN_IF_ERROR(r->Admit(i));
    r->workers_[i].up = true;
    LOG(INFO) << "worker " << r->workers_[i].client->address() << " owns "
              << r->home_.Count(i) << " experts";
  }
  {
    absl::MutexLock lock(&r->mu_);
    r->stats_.workers_up = static_cast<int>(r->workers_.size());
  }
  r->supervisor_ = std::thread([p = r.get()] { p->Supervise(); });
  return r;
}

RemoteExpertExecutor::~RemoteExpertExecutor() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (supervisor_.joinable()) supervisor_.join();
  for (Worker& w : workers_) w.client->CloseStream();
}

absl::Status RemoteExpertExecutor::Admit(int i) {
  WorkerClient& c = *workers_[i].client;
  ST_RETURN_IF_ERROR(c.Pair(fingerprint_, config_));
  std::vector<ExpertKey> keys;
  for (int l = 0; l < config_.n_layers; ++l) {
    for (int e = 0; e < config_.n_experts; ++e) {
      if (home_.owner(l, e) == i) keys.push_back({l, e});
    }
  }
  ST_RETURN_IF_ERROR(c.Assign(keys));
  return c.OpenStream();
}

void RemoteExpertExecutor::MarkDown(int i, const absl::Status& why) {
  Worker& w = workers_[i];
  w.up = false;
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
  down_.insert(i);
}

void RemoteExpertExecutor::Supervise() {
  while (true) {
    std::vector<int> due;
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(20))) return;
      const Clock::time_point now = Clock::now();
      for (int i : down_) {
        if (now >= workers_[i].next_attempt) due.push_back(i);
      }
    }
    for (int i : due) {
      absl::Status s = Admit(i);
      absl::MutexLock lock(&mu_);
      Worker& w = workers_[i];
      if (s.ok()) {
        down_.erase(i);
        w.ready = true;
        LOG(INFO) << "worker " << w.client->address() << " re-admitted";
      } else {
        w.backoff_ms = std::min(w.backoff_ms * 2, BackoffMaxMs(cluster_));
        w.next_attempt = Clock::now() + std::chrono::milliseconds(w.backoff_ms);
        VLOG(1) << "worker " << w.client->address() << " not back yet: " << s;
      }
    }
  }
}

void RemoteExpertExecutor::ComputeLocal(int layer, const Routes& routes, const float* h,
                                        const std::vector<int>& items) {
  if (items.empty()) return;
  const ExpertStacks& s = stacks_[layer];
  const size_t d = config_.d_model;
  const int top_k = routes.top_k;
  std::vector<std::vector<int>> by_expert(s.n_experts);
  for (int i : items) by_expert[routes.ids[i]].push_back(i);  // items are increasing
  for (int e = 0; e < s.n_experts; ++e) {
    const std::vector<int>& slots = by_expert[e];
    if (slots.empty()) continue;
    const int n = static_cast<int>(slots.size());
    gathered_.resize(n * d);
    expert_out_.resize(n * d);
    GatherSlotRows(h, slots, top_k, d, gathered_.data());
    LocalExpertExecutor::ComputeExpert(ExpertStacks::Slice(s.gate, e, s.n_experts),
                                       ExpertStacks::Slice(s.up, e, s.n_experts),
                                       ExpertStacks::Slice(s.down, e, s.n_experts),
                                       s.down_transposed, gathered_.data(), n, expert_out_.data(),
                                       pool_);
    ScatterSlotRows(expert_out_.data(), slots, d, slot_out_.data());
  }
}

void RemoteExpertExecutor::Prepare(int layer, const Routes& routes) {
  if (!cluster_.prefetch_hints()) return;
  std::vector<std::vector<ExpertKey>> hints(workers_.size());
  std::vector<uint8_t> seen(config_.n_experts, 0);
  for (int32_t e : routes.ids) {
    if (seen[e]) continue;
    seen[e] = 1;
    const int o = home_.owner(layer, e);
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
  slot_out_.resize(static_cast<size_t>(n_items) * d);  // [n_tokens, top_k, d]

  {  // Workers the supervisor brought back join at a step boundary.
    absl::MutexLock lock(&mu_);
    ++stats_.steps;
    for (Worker& w : workers_) {
      if (w.ready) {
        w.ready = false;
        w.up = true;
        ++stats_.readmissions;
      }
    }
    stats_.workers_up = static_cast<int>(
        std::count_if(workers_.begin(), workers_.end(), [](const Worker& x) { return x.up; }));
  }

  // Split the items by owner.
  local_items_.clear();
  for (Worker& w : workers_) w.items.clear();
  for (int i = 0; i < n_items; ++i) {
    const int o = home_.owner(layer, routes.ids[i]);
    if (o != kLocalOwner && workers_[o].up) {
      workers_[o].items.push_back(i);
    } else {
      local_items_.push_back(i);
    }
  }

  // One message per worker with all of its work.
  const Clock::time_point sent = Clock::now();
  const Clock::time_point deadline = sent + std::chrono::milliseconds(StepTimeoutMs(cluster_));
  uint64_t bytes_sent = 0, requests = 0;
  for (Worker& w : workers_) {
    w.busy = false;
    if (w.items.empty()) continue;
    v1::ComputeRequest req;
    req.set_step_id(++step_id_);
    req.set_layer(layer);
    std::string* hidden = req.mutable_hidden();
    hidden->reserve(w.items.size() * d * sizeof(float));
    int last_token = -1, rows = 0;
    for (int i : w.items) {
      const int t = i / top_k;
      if (t != last_token) {  // items increase, so tokens do too
        hidden->append(reinterpret_cast<const char*>(h + static_cast<size_t>(t) * d),
                       d * sizeof(float));
        last_token = t;
        ++rows;
      }
      req.add_row(rows - 1);
      req.add_expert(routes.ids[i]);
    }
    req.set_n_rows(rows);
    bytes_sent += req.ByteSizeLong();
    ++requests;
    w.step = step_id_;
    w.client->Submit(std::move(req));
    w.busy = true;
  }

  // Our own share overlaps with the workers'.
  ComputeLocal(layer, routes, h, local_items_);
  uint64_t local = local_items_.size(), remote = 0, failover = 0, bytes_received = 0;
  std::vector<int64_t> overheads;

  for (int wi = 0; wi < static_cast<int>(workers_.size()); ++wi) {
    Worker& w = workers_[wi];
    if (!w.busy) continue;
    w.busy = false;
    absl::StatusOr<const v1::ComputeResponse*> reply = w.client->Await(deadline);
    absl::Status status = reply.status();
    const size_t want = w.items.size() * d * sizeof(float);
    if (status.ok() && ((*reply)->step_id() != w.step || (*reply)->output().size() != want)) {
      status = absl::DataLossError(absl::StrCat("worker ", w.client->address(), ": reply to step ",
                                                (*reply)->step_id(), " with ",
                                                (*reply)->output().size(), " bytes, expected step ",
                                                w.step, " with ", want));
    }
    if (status.ok()) {
      const v1::ComputeResponse& r = **reply;
      overheads.push_back(
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent).count() -
          r.compute_us());
      bytes_received += r.ByteSizeLong();
      const float* y = reinterpret_cast<const float*>(r.output().data());
      for (size_t k = 0; k < w.items.size(); ++k) {
        std::memcpy(&slot_out_[static_cast<size_t>(w.items[k]) * d], y + k * d, d * sizeof(float));
      }
      remote += w.items.size();
      ++w.ok_steps;
      continue;
    }
    MarkDown(wi, status);
    ComputeLocal(layer, routes, h, w.items);
    failover += w.items.size();
    local += w.items.size();
  }

  // Weighted combination in slot order: the very function
  // LocalExpertExecutor uses, so the sums are bit-identical.
  CombineSlots(routes, slot_out_.data(), d, out);

  absl::MutexLock lock(&mu_);
  stats_.remote_requests += requests;
  stats_.remote_items += remote;
  stats_.local_items += local;
  stats_.failover_items += failover;
  stats_.bytes_sent += bytes_sent;
  stats_.bytes_received += bytes_received;
  if (stats_.overhead_us.size() < (1u << 20)) {
    stats_.overhead_us.insert(stats_.overhead_us.end(), overheads.begin(), overheads.end());
  }
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
  for (int l = 0; l < config_.n_layers; ++l) {
    for (int e = 0; e < config_.n_experts; ++e) {
      const int o = home_.owner(l, e);
      if (o != kLocalOwner && workers_[o].up) ++counts[o];
    }
  }
  return counts;
}

std::string RemoteExpertExecutor::Summary() const {
  const RemoteExpertStats s = stats();
  return absl::StrCat("cluster: ", s.workers_up, "/", workers_.size(), " workers up, ", s.steps,
                      " layer steps, ", s.remote_items, " remote + ", s.local_items,
                      " local expert items, ", s.failovers, " failovers (", s.timeouts,
                      " timeouts, ", s.failover_items, " items recomputed), ", s.readmissions,
                      " re-admissions, ", s.bytes_sent + s.bytes_received,
                      " bytes on the wire, step overhead p50 ", Percentile(s.overhead_us, 0.5),
                      " us p99 ", Percentile(s.overhead_us, 0.99), " us");
}

absl::StatusOr<v1::ClusterConfig> ParseClusterConfig(const std::string& text) {
  v1::ClusterConfig c;
  google::protobuf::TextFormat::Parser parser;
  struct Collector : google::protobuf::io::ErrorCollector {
    std::string errors;
    void AddError(int line, int column, const std::string& message) override {
      absl::StrAppend(&errors, "line ", line + 1, ":", column + 1, ": ", message, "; ");
    }
  } collector;
  parser.RecordErrorsTo(&collector);
  if (!parser.ParseFromString(text, &c)) {
    return absl::InvalidArgumentError(absl::StrCat("cluster config: ", collector.errors));
  }
  return c;
}

absl::StatusOr<v1::ClusterConfig> ClusterConfigFromFlags(const std::string& workers,
                                                         const std::string& token,
                                                         const std::string& config_file) {
  v1::ClusterConfig c;
  if (!config_file.empty()) {
    std::ifstream in(config_file);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read cluster config '", config_file, "'"));
    std::stringstream ss;
    ss << in.rdbuf();
    auto parsed = ParseClusterConfig(ss.str());
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(config_file, ": ", parsed.status().message()));
    }
    c = *parsed;
  }
  for (absl::string_view a : absl::StrSplit(workers, ',', absl::SkipWhitespace())) {
    c.add_worker()->set_address(std::string(absl::StripAsciiWhitespace(a)));
  }
  if (!token.empty()) c.set_token(token);
  for (const auto& w : c.worker()) {
    if (w.address().find(':') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("worker address '", w.address(), "' needs a port (host:port)"));
    }
  }
  return c;
}

absl::StatusOr<RemoteExpertExecutor*> AttachWorkers(Model& model, const v1::ClusterConfig& cluster) {
  ST_ASSIGN_OR_RETURN(std::vector<ExpertStacks> stacks,
                      LoadExpertStacks(model.file(), model.config()));
  ST_ASSIGN_OR_RETURN(std::unique_ptr<RemoteExpertExecutor> remote,
                      RemoteExpertExecutor::Create(model.config(), std::move(stacks),
                                                   GgufFingerprint(model.file()), &model.pool(),
                                                   cluster));
  RemoteExpertExecutor* raw = remote.get();
  model.WrapExperts([&](std::unique_ptr<ExpertExecutor> local) -> std::unique_ptr<ExpertExecutor> {
    remote->Keep(std::move(local));
    return std::move(remote);
  });
  return raw;
}

}  // namespace st
