#include "model/local_expert_executor.h"

#include <algorithm>
#include <cstring>

#include "model/expert_ffn.h"
#include "model/mapped_repack.h"

namespace st {

LocalExpertExecutor::LocalExpertExecutor(const ModelConfig& config,
                                         std::vector<ExpertStacks> stacks, ThreadPool* pool)
    : config_(config), stacks_(std::move(stacks)), pool_(pool) {}

void LocalExpertExecutor::ComputeExpert(const MatrixRef& gate, const MatrixRef& up,
                                        const MatrixRef& down, bool down_transposed,
                                        const float* x, int n, float* y, ThreadPool* pool,
                                        FfnSparsity* sparsity) {
  // Gate (always computed whole) and a non-transposed down (dense over z)
  // use the packed kernels when they live in a GGUF mapping; up stays in
  // rows for sparse ReGLU, and so does a transposed down.
  ExpertFfn({.gate = PackedFromMapping(gate),
             .up = up,
             .down = down_transposed ? down : PackedFromMapping(down),
             .down_transposed = down_transposed},
            x, n, y, pool, sparsity);
}

absl::Status LocalExpertExecutor::Run(int layer, const Routes& routes, const float* h,
                                      float* out) {
  const ExpertStacks& s = stacks_[layer];
  const int n_tokens = routes.n_tokens, top_k = routes.top_k;
  const size_t d = config_.d_model;
  slot_out_.resize(static_cast<size_t>(n_tokens) * top_k * d);  // [n_tokens, top_k, d]

  // Group (token, slot) pairs by expert.
  std::vector<std::vector<int>> by_expert(s.n_experts);
  for (int i = 0; i < n_tokens * top_k; ++i) by_expert[routes.ids[i]].push_back(i);

  for (int e = 0; e < s.n_experts; ++e) {
    const std::vector<int>& slots = by_expert[e];
    if (slots.empty()) continue;
    const int n = static_cast<int>(slots.size());
    gathered_.resize(n * d);
    expert_out_.resize(n * d);
    GatherSlotRows(h, slots, top_k, d, gathered_.data());
    ComputeExpert(ExpertStacks::Slice(s.gate, e, s.n_experts),
                  ExpertStacks::Slice(s.up, e, s.n_experts),
                  ExpertStacks::Slice(s.down, e, s.n_experts), s.down_transposed,
                  gathered_.data(), n, expert_out_.data(), pool_, &sparsity_);
    ScatterSlotRows(expert_out_.data(), slots, d, slot_out_.data());
  }
  CombineSlots(routes, slot_out_.data(), d, out);
  return absl::OkStatus();
}

}  // namespace st
