// ExpertExecutor that spreads a layer step's experts over gRPC workers and
// the coordinator itself, and survives workers that die or stall.
//
// Per layer step: the (token, slot) items are split by the owner of their
// expert (Placement); each up worker gets one ComputeRequest with all of its
// items (sent by its stream thread), the coordinator computes its own items
// meanwhile, then collects the replies. Workers return unweighted per-item
// expert outputs; the combination out[t] = sum_j w[t,j] * y[t,j] runs here in
// slot order with the same expression as LocalExpertExecutor, so results are
// bit-identical to a single process.
//
// Failover: a reply that does not arrive within the step timeout, or a broken
// stream, makes the coordinator recompute that worker's items itself (same
// grouping -> same numbers); the worker is marked down and its experts are
// owned locally until a background thread re-admits it (Describe with the
// fingerprint check, Assign, new stream) with exponential backoff. Every
// event is logged and counted (stats()).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/thread_pool.h"
#include "coordinator/placement.h"
#include "coordinator/worker_client.h"
#include "model/config.h"
#include "model/expert_executor.h"
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
  uint64_t bytes_sent = 0;        // ComputeRequest payload bytes (serialized)
  uint64_t bytes_received = 0;    // ComputeResponse payload bytes (serialized)
  // Per remote request: reply time minus the worker's compute time, µs.
  std::vector<int64_t> overhead_us;
  int workers_up = 0;
};

// Percentile p in [0, 1] of stats.overhead_us (0 if empty).
int64_t OverheadPercentile(const RemoteExpertStats& stats, double p);

class RemoteExpertExecutor : public ExpertExecutor {
 public:
  // Pairs with every worker of `cluster` (fingerprint check; a mismatch or a
  // wrong token is an error, an unreachable worker only starts down), places
  // and assigns experts, opens the streams. `stacks` are the coordinator's
  // own expert views (for its share and for failover).
  static absl::StatusOr<std::unique_ptr<RemoteExpertExecutor>> Create(
      const ModelConfig& config, std::vector<ExpertStacks> stacks, uint64_t fingerprint,
      ThreadPool* pool, const smallthinker::v1::ClusterConfig& cluster);
  ~RemoteExpertExecutor() override;

  // Sends Prefetch hints for this step's remote experts (if prefetch_hints).
  void Prepare(int layer, const Routes& routes) override;
  absl::Status Run(int layer, const Routes& routes, const float* h, float* out) override;

  // A consistent copy of the counters.
  RemoteExpertStats stats() const;
  // One-line human summary of stats() (for stderr).
  std::string Summary() const;
  // Experts owned by each worker in the placement now in effect (-1 entry
  // not included): index = worker.
  std::vector<int> OwnedCounts() const;

  // Keeps another object alive as long as this executor (the wrapped local
  // executor).
  void Keep(std::unique_ptr<ExpertExecutor> other) { kept_ = std::move(other); }

 private:
  struct Worker {
    std::unique_ptr<WorkerClient> client;
    // Main-thread view: used in this step.
    bool up = false;
    // Shared with the supervisor thread (under mu_). The supervisor only
    // touches `client` of a worker in down_.
    bool ready = false;  // re-admitted, waiting for the main thread
    Clock::time_point next_attempt;
    int backoff_ms = 0;
    std::vector<int> items;  // this step's items (main thread)
    uint64_t step = 0;       // step id of the request in flight
    int ok_steps = 0;        // replies since it was last marked down
    bool busy = false;
  };

  RemoteExpertExecutor(const ModelConfig& config, std::vector<ExpertStacks> stacks,
                       uint64_t fingerprint, ThreadPool* pool,
                       smallthinker::v1::ClusterConfig cluster);
  // Pairs, assigns and opens the stream of worker i.
  absl::Status Admit(int i);
  void MarkDown(int i, const absl::Status& why);
  void Supervise();
  // Computes `items` (indices into the step's (token, slot) list) locally,
  // grouped by expert, into slot_out_.
  void ComputeLocal(int layer, const Routes& routes, const float* h, const std::vector<int>& items);

  const ModelConfig& config_;
  std::vector<ExpertStacks> stacks_;
  const uint64_t fingerprint_;
  ThreadPool* pool_;
  const smallthinker::v1::ClusterConfig cluster_;
  Placement home_;  // placement with every worker up
  std::vector<Worker> workers_;
  std::unique_ptr<ExpertExecutor> kept_;

  uint64_t step_id_ = 0;
  std::vector<float> slot_out_, gathered_, expert_out_;
  std::vector<int> local_items_;

  mutable absl::Mutex mu_;
  RemoteExpertStats stats_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::set<int> down_ ABSL_GUARDED_BY(mu_);  // workers the supervisor tries to bring back
  std::thread supervisor_;
};

// Parses a textproto ClusterConfig (INVALID_ARGUMENT with the parser's
// message).
absl::StatusOr<smallthinker::v1::ClusterConfig> ParseClusterConfig(const std::string& text);
// --workers "host:port,host:port" + --worker-token + optional config file
// (read and parsed first; the flags add workers / override the token).
absl::StatusOr<smallthinker::v1::ClusterConfig> ClusterConfigFromFlags(
    const std::string& workers, const std::string& token, const std::string& config_file);

// Wraps model's expert executor with a RemoteExpertExecutor for `cluster`.
// Returns the executor (owned by the model).
absl::StatusOr<RemoteExpertExecutor*> AttachWorkers(Model& model,
                                                    const smallthinker::v1::ClusterConfig& cluster);

}  // namespace st
