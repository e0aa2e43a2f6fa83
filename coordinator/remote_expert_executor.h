// ExpertExecutor that spreads a layer step's experts over gRPC workers and
// the coordinator itself, and survives workers that die or stall.
//
// Per layer step: the (token, slot) items are split by the owner of their
// expert (Placement); each up worker gets one ComputeRequest with all of its
// items, the coordinator computes its own items meanwhile, then collects the
// replies. A worker's share that would need a message past the 64 MiB cap
// (ClusterConfig.max_message_bytes; long prefills) goes as several
// requests of whole tokens, one round after another. Workers return unweighted per-item
// expert outputs, and the combination out[t] = sum_j w[t,j] * y[t,j] runs
// here in slot order with the same expression as LocalExpertExecutor
// (CombineRows), so results are bit-identical to a single process; a worker
// that holds every slot of each token of its request (and says it can)
// gets the weights and returns each token combined by that same expression.
//
// Failover: a reply that does not arrive within the step timeout, or a broken
// stream, makes the coordinator recompute that worker's items itself (same
// grouping -> same numbers) and marks the worker down. Placement is then
// recomputed: the worker's experts are dealt over the workers still up and
// the coordinator by their shares (capacity permitting). A worker is only
// sent experts it has been told to hold: experts it gains stay on the
// coordinator until its Assign (sent by a background thread, never by the
// decode step) succeeded (coordinator/assignments.h). A background thread
// re-admits a down worker with exponential backoff (Describe with the
// fingerprint check, Assign of its share in the placement that includes it,
// new stream), and placement is recomputed again with it.
//
// Speed: every reply's per-item time (round trip included) feeds a
// SpeedMeter per worker; when a worker is markedly slower or faster than its
// placed share says (ClusterConfig.rebalance_factor), placement is
// recomputed with the measured speeds (coordinator/worker_speed.h).
//
// Every event (failover, timeout, re-admission, placement recompute, Assign)
// is logged and counted (stats(), Summary()).
//
// Thread safety: Prepare, Run, OwnedCounts and Owner are called by one
// thread (the forward pass); stats() and Summary() from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/thread_pool.h"
#include "coordinator/assignments.h"
#include "coordinator/cluster_config.h"
#include "coordinator/placement.h"
#include "coordinator/worker_client.h"
#include "coordinator/worker_speed.h"
#include "model/config.h"
#include "model/expert_executor.h"
#include "model/expert_phases.h"
#include "model/weights.h"
#include "smallthinker/v1/expert.pb.h"

namespace st {

class Model;

struct RemoteExpertStats {
  uint64_t steps = 0;             // Run calls
  uint64_t remote_requests = 0;   // ComputeRequests sent
  uint64_t remote_items = 0;      // (token, slot) items computed by workers
  uint64_t local_items = 0;       // items computed here (own share + failover)
  uint64_t failover_items = 0;    // items recomputed after a worker failed
  uint64_t failovers = 0;         // worker failures during a step
  uint64_t timeouts = 0;          // ... of which were step timeouts
  uint64_t readmissions = 0;      // workers brought back
  uint64_t placements = 0;        // placement recomputes (worker down/back, speed)
  uint64_t rebalances = 0;        // ... of which for measured speed
  uint64_t assigns = 0;           // Assign calls that moved experts between owners
  uint64_t assign_failures = 0;   // ... that failed (the worker is marked down)
  uint64_t bytes_sent = 0;        // ComputeRequest payload bytes (serialized)
  uint64_t bytes_received = 0;    // ComputeResponse payload bytes (serialized)
  uint64_t combined_tokens = 0;   // (token, layer) rows a worker combined
  // Per remote request: reply time minus the worker's compute time, µs.
  std::vector<int64_t> overhead_us;
  // Per remote request, the parts of a step (µs): building and writing the
  // request (Submit), submit to reply read by the stream thread (round
  // trip), the worker's compute time, and reply read to the forward pass
  // having it (wake).
  std::vector<int64_t> submit_us, round_trip_us, compute_us, wake_us;
  // Per Run (layer step), µs: its wall time, and the time since the
  // previous Run returned (the coordinator's attention, router, ... ).
  std::vector<int64_t> run_us, between_us;
  int workers_up = 0;
};

// The timing series of RemoteExpertStats keep their latest samples only:
// once a series reaches this many, its older half is dropped (a bench run's
// 3 x 128 tokens of the 21b with 2 workers is ~40K samples).
inline constexpr size_t kMaxTimingSamples = size_t{1} << 17;

// Percentile p in [0, 1] of stats.overhead_us (0 if empty).
int64_t OverheadPercentile(const RemoteExpertStats& stats, double p);

// The step deadline: step_timeout_ms, 2000 when unset.
inline int StepTimeoutMs(const smallthinker::v1::ClusterConfig& c) {
  return c.step_timeout_ms() > 0 ? c.step_timeout_ms() : 2000;
}

class RemoteExpertExecutor : public ExpertExecutor {
 public:
  // Pairs with every worker of `cluster` (fingerprint check; a mismatch, a
  // wrong token, a server that is no worker, one worker under two addresses
  // or no worker reachable at all is an error; a worker that does not
  // answer while another does starts down and is retried), places and
  // assigns experts, opens the streams. `stacks` are the coordinator's own expert
  // views (for its share and for failover); `hot_order` per layer, experts
  // from most to least routed (PlacementOptions::hot_order).
  static absl::StatusOr<std::unique_ptr<RemoteExpertExecutor>> Create(
      const ModelConfig& config, std::vector<ExpertStacks> stacks, uint64_t fingerprint,
      ThreadPool* pool, const smallthinker::v1::ClusterConfig& cluster,
      std::vector<std::vector<int>> hot_order = {}, uint64_t content_sample = 0);
  ~RemoteExpertExecutor() override;

  // Sends Prefetch hints for this step's remote experts (if prefetch_hints).
  void Prepare(int layer, const Routes& routes) override;
  absl::Status Run(int layer, const Routes& routes, const float* h, float* out) override;

  // A consistent copy of the counters.
  RemoteExpertStats stats() const;
  // One-line human summary of stats() (for stderr).
  std::string Summary() const;
  // Experts each worker computes in the placement now in effect (index =
  // worker; the coordinator's are not included). Changes at step boundaries.
  std::vector<int> OwnedCounts() const;
  // Who computes (layer, expert) now: a worker index or kLocalOwner.
  int Owner(int layer, int expert) const {
    return route_[static_cast<size_t>(layer) * config_.n_experts + expert];
  }

  // Keeps another object alive as long as this executor (the wrapped local
  // executor).
  void Keep(std::unique_ptr<ExpertExecutor> other) { kept_ = std::move(other); }
  // The object given to Keep (null if none): `bench --vs-local` runs the
  // wrapped local executor in turns with this one.
  ExpertExecutor* kept() const { return kept_.get(); }
  // The next Run records no "between steps" time: its caller ran something
  // else since the last one (forward thread only).
  void ResetStepClock() { last_run_end_ = Clock::time_point{}; }

 private:
  struct Worker {
    std::unique_ptr<WorkerClient> client;
    // Main-thread view: used in this step.
    bool up = false;
    std::vector<int> step_items;  // this step's items
    // ... as [begin, end) ranges of step_items, one per Compute message
    // (whole tokens each; several only when one would pass the cap).
    std::vector<std::pair<size_t, size_t>> messages;
    std::vector<int> items;  // the items of the message in flight
    // This step's request asks the worker to combine its tokens (it holds
    // every slot of each, and says it can); row r of its reply is token
    // row_token[r].
    bool combine = false;
    std::vector<int> row_token;
    uint64_t step = 0;       // step id of the request in flight
    Clock::time_point sent;       // when its request was started
    Clock::time_point submitted;  // ... and handed to the stream
    bool busy = false;
    int ok_steps = 0;        // replies since it was last marked down
    SpeedMeter speed;
    // Shared with its supervisor thread (under mu_). The supervisor only
    // touches `client` of a worker in down_ or with an Assign job.
    bool ready = false;           // re-admitted, waiting for the main thread
    Assignments::Set admitted;    // ... holding this set
    absl::Status assign_error;    // an Assign job failed: mark it down
    Clock::time_point next_attempt;
    int backoff_ms = 0;
    absl::Status admit_error;     // the last failed re-admission's (logged once)
    double placed_speed = 0;      // the speed placement uses
    uint64_t capacity_experts = 0;
  };

  RemoteExpertExecutor(const ModelConfig& config, std::vector<ExpertStacks> stacks,
                       uint64_t fingerprint, ThreadPool* pool,
                       smallthinker::v1::ClusterConfig cluster, PlacementOptions placement);
  // Placement with the workers in `members` up, at their placed speeds.
  Placement PlaceLocked(const std::vector<bool>& members) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records that worker i answered Describe (speed, capacity).
  void DescribedLocked(int i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Worker i's supervisor, while it is down: pairs it, assigns it its share
  // of the placement that includes it, opens its stream.
  absl::Status Admit(int i);
  void MarkDown(int i, const absl::Status& why);
  // INVALID_ARGUMENT when worker i (described) is the same process, by its
  // instance id, as a worker j with others[j] set: as two they would keep
  // replacing each other's experts.
  absl::Status NotListedTwice(int i, const std::vector<bool>& others) const;
  // Worker i did not answer at start, or (answered) failed its first
  // Assign (`why`): down from the outset, its supervisor retrying it with
  // backoff; not a failover.
  void StartDownLocked(int i, const absl::Status& why, bool answered)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Step boundary (main thread): takes in re-admitted workers and failed
  // Assigns, recomputes placement if needed, hands Assign jobs to the
  // workers' supervisors and refreshes route_.
  void BeginStep();
  // Frees the packed copies of the experts route_ sends to workers: the
  // coordinator packs a worker's experts when it computes them in its
  // place (failover), and they would stay after the worker (or another)
  // takes them back.
  void DropRemoteCopies();
  // After the replies: feeds the speed meters' verdict to placement.
  void CheckSpeeds();
  void RecomputeLocked(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // "coordinator 8, host:port 12, ..." for logs.
  std::string DescribeLocked(const Placement& p) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Worker i's supervisor thread: its Assign jobs and, while it is down,
  // its re-admission. One per worker, so a worker whose call stalls (up to
  // an Assign's 60 s) holds up no other worker's.
  void Supervise(int i);
  void RunAssign(const Assignments::Job& job);
  // Computes `items` (indices into the step's (token, slot) list) locally,
  // grouped by expert, into slot_out_. `poll_between`: one expert at a time,
  // polling the busy workers' streams in between (keeps large requests
  // flowing); else all at once.
  // Makes the packed copies of the experts the initial placement keeps on
  // the coordinator now, on the pool, rather than at each one's first step
  // while decoding (each cost a stall of milliseconds; experts it gains
  // later, by failover or a new placement, are still packed on first use).
  void PackLocalExperts();
  void ComputeLocal(int layer, const Routes& routes, const float* h, const std::vector<int>& items,
                    bool poll_between);
  // Splits w.step_items into w.messages so that no request or reply passes
  // max_message_bytes_ (nor the worker's row and item limits).
  void SplitIntoMessages(Worker& w, const Routes& routes) const;
  // The Compute request of w.items (sets w.row_token, w.combine; a new
  // step id).
  smallthinker::v1::ComputeRequest BuildRequest(Worker& w, int layer, const Routes& routes,
                                                const float* h);

  const ModelConfig& config_;
  std::vector<ExpertStacks> stacks_;
  const uint64_t fingerprint_;
  uint64_t content_sample_ = 0;  // GgufContentSample; 0 = not checked (set by Create)
  ThreadPool* pool_;
  const smallthinker::v1::ClusterConfig cluster_;
  const PlacementOptions placement_options_;
  const double rebalance_factor_;
  const size_t max_message_bytes_;  // ClusterConfig.max_message_bytes or the cap
  // The workers' Compute streams complete here (polled by the forward pass
  // only); declared before workers_ so that it outlives their clients.
  grpc::CompletionQueue cq_;
  std::vector<Worker> workers_;
  std::unique_ptr<ExpertExecutor> kept_;

  uint64_t step_id_ = 0;
  std::vector<int> route_;  // main thread: owner per layer * n_experts + expert
  std::vector<float> slot_out_, gathered_, expert_out_;
  std::vector<int> local_items_;
  std::vector<uint8_t> token_done_;  // per token of a step: a worker combined it
  std::vector<std::vector<int>> by_expert_;  // ComputeLocal scratch
  std::vector<int> used_;
  std::vector<ExpertMatrices> matrices_;
  ExpertPhases phases_;
  Clock::time_point last_run_end_{};

  mutable absl::Mutex mu_;
  RemoteExpertStats stats_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::set<int> down_ ABSL_GUARDED_BY(mu_);  // workers the supervisor tries to bring back
  std::vector<bool> members_ ABSL_GUARDED_BY(mu_);  // up, as placement sees it
  Placement target_ ABSL_GUARDED_BY(mu_);
  Assignments assignments_ ABSL_GUARDED_BY(mu_);
  // Assign jobs per worker, for its supervisor thread.
  std::vector<std::vector<Assignments::Job>> jobs_ ABSL_GUARDED_BY(mu_);
  std::string recompute_why_ ABSL_GUARDED_BY(mu_);  // non-empty: placement is stale
  bool route_stale_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<std::thread> supervisors_;  // one per worker
};

// Wraps model's expert executor with a RemoteExpertExecutor for `cluster`.
// Hot experts come from cluster.expert_stats, else from
// "<model>.gguf.stpack.stats" when that file exists. Returns the executor
// (owned by the model).
absl::StatusOr<RemoteExpertExecutor*> AttachWorkers(Model& model,
                                                    const smallthinker::v1::ClusterConfig& cluster);

}  // namespace st
