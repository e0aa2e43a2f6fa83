#include "model/expert_phases.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "kernels/activation.h"
#include "model/expert_executor.h"
#include "kernels/packed_matrix.h"

namespace st {
namespace {

// Rows per work item: whole Q8_0 blocks of z (32) and whole packed groups
// (16). 64 gate + 64 up rows of Q4_0 at d_model 1536 are ~108 KB of
// weights, 128 down rows ~54 KB: a thread runs its own items in order, so
// they stream as one run, and the last item of a phase is a short wait.
constexpr size_t kGateUpRows = 64;
constexpr size_t kDownRows = 128;

}  // namespace

bool ExpertPhases::Supports(const ExpertStacks& s) {
  return s.gate.packed != nullptr && s.up.packed != nullptr && s.down.packed != nullptr &&
         !s.down_transposed && s.gate.type == s.up.type && s.n_experts > 0 &&
         (s.gate.rows / s.n_experts) % kQK == 0;
}

bool ExpertPhases::Supports(const ExpertMatrices& m) {
  return m.gate.packed != nullptr && m.up.packed != nullptr && m.down.packed != nullptr &&
         !m.down_transposed && m.gate.type == m.up.type && m.gate.rows % kQK == 0;
}

void ExpertPhases::Run(const ExpertStacks& s, const std::vector<std::vector<int>>& by_expert,
                       const std::vector<int>& used, int top_k, const float* h, int n_tokens,
                       float* slot_out, ThreadPool* pool, FfnSparsity* sparsity) {
  Run(
      [&s](int e) {
        return ExpertMatrices{ExpertStacks::Slice(s.gate, e, s.n_experts),
                              ExpertStacks::Slice(s.up, e, s.n_experts),
                              ExpertStacks::Slice(s.down, e, s.n_experts), false};
      },
      by_expert, used, top_k, /*slot_rows=*/nullptr, h, n_tokens, slot_out, pool, sparsity);
}

void ExpertPhases::Run(const std::function<ExpertMatrices(int)>& matrices,
                       const std::vector<std::vector<int>>& by_expert,
                       const std::vector<int>& used, int top_k, const int32_t* slot_rows,
                       const float* h, int n_rows, float* slot_out, ThreadPool* pool,
                       FfnSparsity* sparsity) {
  if (used.empty()) return;
  const ExpertMatrices first = matrices(used[0]);
  const size_t d_model = first.gate.cols, d_expert = first.gate.rows;
  // Each token's input quantized once (not once per expert it visits).
  tokens_.Prepare(h, n_rows, d_model, /*need_q8=*/true);
  size_t total = 0;
  for (int e : used) total += by_expert[e].size();
  ResizeScratch(g_, total * d_expert);
  ResizeScratch(u_, total * d_expert);
  ResizeScratch(y_, total * d_model);
  xq_.Allocate(/*x=*/nullptr, total, d_model);  // filled by CopyVec, never quantized here
  zq_.Allocate(g_.data(), total, d_expert);
  experts_.resize(used.size());
  size_t v0 = 0;
  for (size_t k = 0; k < used.size(); ++k) {
    Expert& ex = experts_[k];
    const int e = used[k];
    const std::vector<int>& slots = by_expert[e];
    const ExpertMatrices m = k == 0 ? first : matrices(e);
    ex.id = e;
    ex.gate = m.gate;
    ex.up = m.up;
    ex.down = m.down;
    ex.v0 = v0;
    ex.n = slots.size();
    for (size_t i = 0; i < ex.n; ++i) {
      const size_t t = slot_rows != nullptr ? slot_rows[slots[i]] : slots[i] / top_k;
      xq_.CopyVec(v0 + i, tokens_, t);
    }
    v0 += ex.n;
  }

  // Phase 1: gate and up rows, z = relu(g) * u, z's Q8_0 blocks.
  const size_t up_items = (d_expert + kGateUpRows - 1) / kGateUpRows;
  std::atomic<uint64_t> active{0};
  ForEachItem(used.size() * up_items, pool, [&](size_t item) {
    const Expert& ex = experts_[item / up_items];
    const size_t r0 = (item % up_items) * kGateUpRows;
    const size_t r1 = std::min(d_expert, r0 + kGateUpRows);
    float* g_ex = g_.data() + ex.v0 * d_expert;
    float* u_ex = u_.data() + ex.v0 * d_expert;
    PackedMatMulGroups(ex.gate.type, ex.gate.packed, d_model, xq_, ex.v0, ex.v0 + ex.n,
                       r0 / kPackRows, r1 / kPackRows, g_ex, d_expert);
    PackedMatMulGroups(ex.up.type, ex.up.packed, d_model, xq_, ex.v0, ex.v0 + ex.n,
                       r0 / kPackRows, r1 / kPackRows, u_ex, d_expert);
    uint64_t on = 0;
    for (size_t i = 0; i < ex.n; ++i) {
      float* g = g_ex + i * d_expert;
      const float* u = u_ex + i * d_expert;
      on += ReluMulCount(g + r0, u + r0, r1 - r0);  // z, as ExpertFfn
      zq_.QuantizeBlocks(ex.v0 + i, r0 / kQK, r1 / kQK);
    }
    active.fetch_add(on, std::memory_order_relaxed);
  });

  // Phase 2: down rows, copied into the slots.
  const size_t down_items = (d_model + kDownRows - 1) / kDownRows;
  ForEachItem(used.size() * down_items, pool, [&](size_t item) {
    const Expert& ex = experts_[item / down_items];
    const size_t r0 = (item % down_items) * kDownRows;
    const size_t r1 = std::min(d_model, r0 + kDownRows);
    float* y = y_.data() + ex.v0 * d_model;
    PackedMatMulGroups(ex.down.type, ex.down.packed, d_expert, zq_, ex.v0, ex.v0 + ex.n,
                       r0 / kPackRows, r1 / kPackRows, y, d_model);
    const std::vector<int>& slots = by_expert[ex.id];
    for (size_t i = 0; i < slots.size(); ++i) {
      std::memcpy(slot_out + static_cast<size_t>(slots[i]) * d_model + r0,
                  y + i * d_model + r0, (r1 - r0) * sizeof(float));
    }
  });

  if (sparsity != nullptr) {
    sparsity->active_rows += active.load();
    sparsity->total_rows += total * d_expert;
    sparsity->read_rows += 2 * total * d_expert;  // packed up and down: every row
  }
}

}  // namespace st
