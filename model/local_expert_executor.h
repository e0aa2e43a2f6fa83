// ExpertExecutor over expert tensors that are directly addressable in memory
// (the memory-mapped GGUF).
#pragma once

#include <string>
#include <vector>

#include "common/thread_pool.h"
#include "model/config.h"
#include "model/expert_executor.h"
#include "model/expert_ffn.h"
#include "model/expert_phases.h"
#include "model/weights.h"

namespace st {

// Groups a step's tokens by expert so each expert's weights are read once per
// step, computes ReGLU FFNs with the kernels, and combines outputs per token
// in slot order. Thread-compatible. Packed stacks (Q4_0/Q8_0, the usual
// case) run every step through ExpertPhases: all experts' rows in small work
// items over `pool` (may be null). Otherwise, with few experts in a step
// (single-sequence decode) each expert's matrices are split over `pool`;
// with at least two experts per thread (batched decode, prefill) the experts
// themselves are spread over the pool, one thread each. Results are the same
// every way.
class LocalExpertExecutor : public ExpertExecutor {
 public:
  LocalExpertExecutor(const ModelConfig& config, std::vector<ExpertStacks> stacks,
                      ThreadPool* pool);

  absl::Status Run(int layer, const Routes& routes, const float* h, float* out) override;

  // Computes one expert for n token rows x [n, d_model] into y [n, d_model].
  // Shared with other executors that hold experts as MatrixRefs.
  static void ComputeExpert(const MatrixRef& gate, const MatrixRef& up, const MatrixRef& down,
                            bool down_transposed, const float* x, int n, float* y,
                            ThreadPool* pool, FfnSparsity* sparsity = nullptr);

  const FfnSparsity& sparsity() const { return sparsity_; }
  // Bytes of one expert's gate, up and down as they are computed (K-quants
  // computed natively at their file size, other storage formats at their
  // Q8_0 conversion's), averaged over the layers: a decode's expert
  // traffic. And the file's storage formats computed natively ("Q4_K,
  // Q6_K"), or "" when none is.
  uint64_t ExpertBytes() const;
  std::string NativeFormats() const;
  void ResetSparsity() { sparsity_ = FfnSparsity{}; }

 private:
  const ModelConfig& config_;
  std::vector<ExpertStacks> stacks_;
  ThreadPool* pool_;
  // Scratch, reused across calls.
  std::vector<float> gathered_, expert_out_, slot_out_;
  std::vector<std::vector<int>> by_expert_;  // [n_experts] (token, slot) items
  std::vector<int> used_;                    // experts with items this step
  ExpertPhases phases_;                      // packed stacks: every step
  FfnSparsity sparsity_;
  bool stacks_packed_ = false;  // gate/down stacks repacked (first Run)
};

}  // namespace st
