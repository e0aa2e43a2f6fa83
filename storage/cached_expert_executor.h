// ExpertExecutor over the expert cache: experts come from the pack through
// the cache (read on demand, prefetched right after routing), are computed
// with sparse ReGLU, and combined in slot order exactly as every executor does.
// A pack of K-quant experts as stored (kPackFlagAsStored) is computed by
// ExpertPhases, on the same bytes with the same kernels as the GGUF's
// experts in RAM: the same logits bit for bit.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "common/thread_pool.h"
#include "model/config.h"
#include "model/expert_executor.h"
#include "model/expert_ffn.h"
#include "model/expert_phases.h"
#include "model/sparse_phases.h"
#include "storage/expert_cache.h"

namespace st {

// How well one-layer-ahead speculation guessed, and what its reads bought.
// Most guesses name experts the cache holds anyway (the popular ones, also
// the easiest to guess); what costs disk time is the guesses it had to
// read, and those are the ones `reads_used` judges.
struct SpeculationCounters {
  uint64_t guessed = 0;   // (token-step, expert) guesses made
  uint64_t correct = 0;   // ... that the real routing then chose
  uint64_t needed = 0;    // distinct experts the real routing chose in speculated steps
  uint64_t tokens = 0;      // decode token-steps guessed for (prompt batches are not)
  uint64_t reads = 0;       // records read because of a guess (not those dropped unread)
  uint64_t reads_used = 0;  // ... that the real routing then chose
  double precision() const { return guessed ? static_cast<double>(correct) / guessed : 0.0; }
  double recall() const { return needed ? static_cast<double>(correct) / needed : 0.0; }
  double read_precision() const { return reads ? static_cast<double>(reads_used) / reads : 0.0; }
  double reads_per_token() const { return tokens ? static_cast<double>(reads) / tokens : 0.0; }
};

class CachedExpertExecutor : public ExpertExecutor {
 public:
  CachedExpertExecutor(const ModelConfig& config, std::unique_ptr<ExpertCache> cache,
                       ThreadPool* pool);

  void Prepare(int layer, const Routes& routes) override;
  void Speculate(int layer, const Routes& routes) override;
  absl::Status Run(int layer, const Routes& routes, const float* h, float* out) override;

  // Called at the start of every step's layers (Prepare of layer 0), after
  // the step's tokens were embedded. Offload releases the embedding's pages.
  void set_step_hook(std::function<void()> hook) { step_hook_ = std::move(hook); }

  // Upper bound of the buffers Run keeps for steps of up to `max_tokens`
  // tokens (slot outputs and SparsePhases' scratch, or ExpertPhases' for a
  // pack of experts as stored), which a memory budget must leave room for:
  // ~0.12 MiB per token on the 4b preset.
  static uint64_t ScratchBytes(const ModelConfig& config, int max_tokens, bool as_stored);

  ExpertCache& cache() { return *cache_; }
  const FfnSparsity& sparsity() const { return sparsity_; }
  const SpeculationCounters& speculation() const { return speculation_; }
  void ResetStats() {
    cache_->ResetCounters();
    sparsity_ = FfnSparsity{};
    speculation_ = SpeculationCounters{};
    speculated_layer_ = -1;
  }

 private:
  // Distinct experts of `routes`, in first-use order.
  std::vector<int> DistinctExperts(const Routes& routes) const;
  // Run's path when every expert of the step is resident and there are at
  // least two per thread (batched decode, prefill): records acquired on this
  // thread, then one expert per pool work item computed on one thread each
  // (the same numbers as splitting each expert over the pool).
  absl::Status RunResidentInParallel(int layer, const Routes& routes, const float* h,
                                     std::vector<int> order,
                                     const std::vector<std::vector<int>>& by_expert);
  // The matrices of a record of `layer` (SparsePhases' or, as stored,
  // ExpertPhases' input).
  ExpertMatrices RecordMatrices(const char* record, int layer) const;
  // Acquires `experts` (waiting for reads in flight) and computes them in
  // one SparsePhases (as stored: ExpertPhases) run into slot_out_; every
  // lock is released after.
  absl::Status RunPhases(int layer, const std::vector<int>& experts,
                         const std::vector<std::vector<int>>& by_expert, const Routes& routes,
                         const float* h);
  // Reads started ahead of compute inside Run (besides Prepare's).
  static constexpr int kLookahead = 2;

  const ModelConfig& config_;
  std::unique_ptr<ExpertCache> cache_;
  ThreadPool* pool_;
  FfnSparsity sparsity_;
  SpeculationCounters speculation_;
  int speculated_layer_ = -1;
  std::vector<int> speculated_;  // distinct experts guessed for speculated_layer_
  std::vector<int> speculated_reads_;  // ... of them, those the guess started reads for
  std::vector<float> gathered_, expert_out_, slot_out_;
  SparsePhases phases_;
  ExpertPhases stored_phases_;
  std::function<void()> step_hook_;
  bool use_phases_ = false;  // the pack's layout is SparsePhases' (set at construction)
  bool as_stored_ = false;   // the pack holds K-quant experts as stored (ExpertPhases)
};

}  // namespace st
