// Puts a model's experts behind the expert cache: finds the pack beside the
// GGUF, sizes the cache from --memory-budget, pins the hottest experts from
// recorded statistics and swaps the model's executor for a
// CachedExpertExecutor.
//
// Memory plan for a budget B (the whole process):
//   cache = B - (resident now: code, tokenizer, heap, packed weights) - dense weights
//             (the token embedding only as one step's rows: its pages are
//             released after each step unless the LM head reads it whole)
//             - KV caches (sessions x context) - margin for transient buffers
// and the engine refuses to start, printing these numbers, when the cache
// would be smaller than one layer's top-k experts.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "model/model.h"
#include "storage/cached_expert_executor.h"
#include "storage/expert_source.h"
#include "storage/expert_stats.h"

namespace st {

struct OffloadOptions {
  std::string pack_path;         // "" = "<model>.stpack" if it exists
  bool use_pack = true;          // false: ignore any pack, run from the GGUF mapping
  uint64_t memory_budget = 0;    // bytes for the whole process; 0 = no budget (all experts cached)
  int64_t context_tokens = 4096; // per session, for the KV cache's share
  int sessions = 1;              // KV caches that will exist at once
  uint64_t kv_cap_bytes = 0;     // > 0: the KV caches are held to this (serve's --kv-budget)
  SourceOptions source;
  // The stats file's hottest experts: up to pin_fraction of the slots are
  // pinned for the whole run, then up to preload_fraction are read at start
  // unpinned (a warm cache that the run's own routing may evict). Pinning is
  // off by default: measured on the 4b at 1 GiB, pinning half the slots from
  // a 143-token prompt's counts held experts the bench's decode rarely used
  // (skew1 39.7 t/s, hit 89.4%; uniform 23.9 t/s, hit 56.4%), where LRU over
  // every slot gave 55.9 t/s / 93.5% and 28.9 t/s / 76.5%.
  bool pin_hot = true;           // false: ignore the stats file (no pins, no preload)
  double pin_fraction = 0.0;
  double preload_fraction = 0.5;
  std::string stats_path;        // "" = "<pack>.stats"
  bool speculate = false;        // one-layer-ahead speculative prefetch
  uint64_t margin_bytes = 64ull << 20;  // transient buffers, allocator slack
  int cache_slots = 0;           // > 0: exactly this many slots, no budget arithmetic (tests)
};

struct MemoryPlan {
  uint64_t budget = 0;           // 0: none
  uint64_t process = 0;          // VmRSS when planning (code, tokenizer, heap, packed weights)
  uint64_t dense = 0;            // dense weights (mapped; the embedding as rows in use)
  uint64_t embedding_reserve = 0;  // ... the embedding's share of it (0: counted whole)
  uint64_t kv = 0;               // KV caches
  uint64_t margin = 0;
  uint64_t scratch = 0;          // the expert executor's buffers for max_batch tokens
  uint64_t record = 0;           // one expert record
  uint64_t cache = 0;            // bytes given to the cache
  int slots = 0;
  int total_experts = 0;
  int pinned = 0;
  int preloaded = 0;             // read at start from the stats, not pinned
  std::string Describe() const;  // one line per item
};

// What EnableOffload set up. The executor itself is owned by the model.
class Offload {
 public:
  CachedExpertExecutor& executor() { return *executor_; }
  const MemoryPlan& plan() const { return plan_; }
  const std::string& pack_path() const { return pack_path_; }
  const std::string& stats_path() const { return stats_path_; }
  // Adds the forward pass's routing counts since the last call to the stats
  // file (read-modify-write, atomic rename).
  absl::Status SaveStats(const Forward& forward);
  // Leaves the counts routed so far out of the next SaveStats (a warm-up's
  // synthetic tokens).
  void SkipStatsSoFar(const Forward& forward) { saved_counts_ = forward.routing_counts(); }

 private:
  friend absl::StatusOr<std::unique_ptr<Offload>> EnableOffload(Model&, const OffloadOptions&);
  CachedExpertExecutor* executor_ = nullptr;
  MemoryPlan plan_;
  std::string pack_path_, stats_path_;
  uint64_t fingerprint_ = 0;
  std::vector<uint64_t> saved_counts_;  // routing counts already written
};

// nullptr (and a log line suggesting `smallthinker convert`) when there is no
// pack and no budget; FAILED_PRECONDITION when a budget is set but there is no
// pack; RESOURCE_EXHAUSTED with the plan when the budget is too small; pack
// errors (wrong model, truncated) as ExpertPack::OpenFor returns them.
absl::StatusOr<std::unique_ptr<Offload>> EnableOffload(Model& model, const OffloadOptions& options);

}  // namespace st
