// The one door through which the forward pass reaches expert FFNs.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/elementwise.h"

namespace st {

// Routing decision of one layer for a batch of n_tokens tokens: for token t,
// slots j = 0..top_k-1 hold expert ids[t * top_k + j] with gate weight
// weights[t * top_k + j] (largest logit first).
struct Routes {
  int n_tokens = 0;
  int top_k = 0;
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

// Executes the ReGLU experts of a layer. Implementations: local over the
// GGUF's tensors (LocalExpertExecutor); later an SSD-backed cache and remote
// gRPC workers. Not required to be thread-safe: the forward pass calls one
// method at a time.
class ExpertExecutor {
 public:
  virtual ~ExpertExecutor() = default;

  // Called right after layer `layer` is routed and before its attention runs,
  // so an implementation can start fetching the chosen experts.
  virtual void Prepare(int layer, const Routes& routes) {}

  // A guess of layer `layer`'s routing made after the previous layer's
  // attention (Forward's speculation flag; steps of one token only); an
  // implementation may start fetching those experts.
  // Never affects results.
  virtual void Speculate(int layer, const Routes& routes) {}

  // out[t, :] = sum_j weights[t, j] * Expert_{ids[t, j]}(h[t, :]) for every
  // token t; h and out are [n_tokens, d_model]. The sum runs over j in
  // increasing order for every implementation, so results are bit-identical
  // across executors that compute the same expert outputs.
  virtual absl::Status Run(int layer, const Routes& routes, const float* h, float* out) = 0;
};

// Resizes scratch `v` to n elements, growing its capacity to exactly n
// when it must grow (resize would round up to twice the old size and copy
// the old contents): the memory a scratch buffer keeps is then that of the
// largest call, which a memory budget can count.
template <typename T>
void ResizeScratch(std::vector<T>& v, size_t n) {
  if (n > v.capacity()) {
    v = std::vector<T>();
    v.reserve(n);
  }
  v.resize(n);
}

// Groups items by expert, the order every executor computes a step in:
// by_expert[e] gets, in the order of `items`, each item i with
// expert_of(i) == e; `used` the experts with at least one item, larger
// groups first (stable, so ties stay by id), so the last work items of a
// step are short. Outputs land in their items' slots: the order changes no
// number. Both lists keep their capacity across calls.
template <typename Items, typename ExpertOf>
void GroupByExpert(int n_experts, const Items& items, const ExpertOf& expert_of,
                   std::vector<std::vector<int>>& by_expert, std::vector<int>& used) {
  by_expert.resize(n_experts);
  for (auto& group : by_expert) group.clear();
  for (int i : items) by_expert[expert_of(i)].push_back(i);
  used.clear();
  for (int e = 0; e < n_experts; ++e) {
    if (!by_expert[e].empty()) used.push_back(e);
  }
  std::stable_sort(used.begin(), used.end(), [&](int a, int b) {
    return by_expert[a].size() > by_expert[b].size();
  });
}

// Copies the input rows of (token, slot) items `slots` (item i = t * top_k + j)
// into dst [slots.size(), d]: the batch one expert computes.
inline void GatherSlotRows(const float* h, const std::vector<int>& slots, int top_k, size_t d,
                           float* dst) {
  for (size_t i = 0; i < slots.size(); ++i) {
    const float* src = h + static_cast<size_t>(slots[i] / top_k) * d;
    std::copy(src, src + d, dst + i * d);
  }
}

// Copies an expert's outputs src [slots.size(), d] to their items in
// slot_out [n_tokens * top_k, d].
inline void ScatterSlotRows(const float* src, const std::vector<int>& slots, size_t d,
                            float* slot_out) {
  for (size_t i = 0; i < slots.size(); ++i) {
    std::copy(src + i * d, src + (i + 1) * d, slot_out + static_cast<size_t>(slots[i]) * d);
  }
}

// o[:] = sum_j weights[j] * ys[j, :] for j = 0..count-1 in increasing order,
// from zero, in float: THE combination of one token's expert outputs every
// executor (and a worker combining a token it holds whole) uses, so that
// local, cached, remote and failed-over runs give bit-identical results.
inline void CombineRows(const float* weights, const float* ys, int count, size_t d, float* o) {
  std::fill(o, o + d, 0.0f);
  for (int j = 0; j < count; ++j) {
    AddScaledTo(weights[j], ys + static_cast<size_t>(j) * d, o, d);  // o + w * y, never fused
  }
}

// out[t, :] = CombineRows of token t's slots for every token; slot_out is
// [n_tokens, top_k, d].
inline void CombineSlots(const Routes& routes, const float* slot_out, size_t d, float* out) {
  const int top_k = routes.top_k;
  for (int t = 0; t < routes.n_tokens; ++t) {
    const size_t first = static_cast<size_t>(t) * top_k;
    CombineRows(&routes.weights[first], slot_out + first * d, top_k, d, out + t * d);
  }
}

}  // namespace st
