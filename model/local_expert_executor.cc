#include "model/local_expert_executor.h"

#include <algorithm>
#include <cstring>

#include "kernels/activation.h"
#include "kernels/axpy.h"
#include "kernels/matmul.h"

namespace st {

LocalExpertExecutor::LocalExpertExecutor(const ModelConfig& config,
                                         std::vector<ExpertStacks> stacks, ThreadPool* pool)
    : config_(config), stacks_(std::move(stacks)), pool_(pool) {}

void LocalExpertExecutor::ComputeExpert(const MatrixRef& gate, const MatrixRef& up,
                                        const MatrixRef& down, bool down_transposed,
                                        const float* x, int n, float* y, ThreadPool* pool) {
  const size_t d_model = gate.cols, d_expert = gate.rows;
  std::vector<float> g(n * d_expert), u(n * d_expert);  // [n, d_expert]
  Activations act;
  act.PrepareFor(gate.type, x, n, d_model);
  MatMul(gate, act, g.data(), pool);
  MatMul(up, act, u.data(), pool);
  ReGlu(g.data(), u.data(), g.data(), g.size());  // g := relu(g) * u
  if (!down_transposed) {
    Activations z;
    z.PrepareFor(down.type, g.data(), n, d_expert);
    MatMul(down, z, y, pool);  // [n, d_model]
    return;
  }
  // down stored as [d_expert, d_model]: y_i = sum_f z[i, f] * down.row(f),
  // with the d_model columns split over threads in whole quant blocks.
  std::fill(y, y + static_cast<size_t>(n) * d_model, 0.0f);
  auto columns = [&](size_t begin, size_t end) {
    const size_t offset = RowBytes(down.type, begin);
    for (int i = 0; i < n; ++i) {
      const float* zi = g.data() + static_cast<size_t>(i) * d_expert;
      for (size_t f = 0; f < d_expert; ++f) {
        if (zi[f] == 0.0f) continue;
        AxpyRow(down.type, static_cast<const char*>(down.row(f)) + offset, zi[f],
                y + i * d_model + begin, end - begin);
      }
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(d_model, columns, BlockElems(down.type) * 8);
  } else {
    columns(0, d_model);
  }
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
    for (int i = 0; i < n; ++i) {
      std::memcpy(&gathered_[i * d], h + (slots[i] / top_k) * d, d * sizeof(float));
    }
    ComputeExpert(ExpertStacks::Slice(s.gate, e, s.n_experts),
                  ExpertStacks::Slice(s.up, e, s.n_experts),
                  ExpertStacks::Slice(s.down, e, s.n_experts), s.down_transposed,
                  gathered_.data(), n, expert_out_.data(), pool_);
    for (int i = 0; i < n; ++i) {
      std::memcpy(&slot_out_[slots[i] * d], &expert_out_[i * d], d * sizeof(float));
    }
  }
  // Weighted combination in slot order.
  for (int t = 0; t < n_tokens; ++t) {
    float* o = out + t * d;
    std::fill(o, o + d, 0.0f);
    for (int j = 0; j < top_k; ++j) {
      const float w = routes.weights[t * top_k + j];
      const float* y = &slot_out_[(static_cast<size_t>(t) * top_k + j) * d];
      for (size_t c = 0; c < d; ++c) o[c] += w * y[c];
    }
  }
  return absl::OkStatus();
}

}  // namespace st
