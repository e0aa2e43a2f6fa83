#include "model/expert_phases.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "glog/logging.h"
#include "kernels/activation.h"
#include "kernels/kquant_dot.h"
#include "kernels/packed_kquant.h"
#include "kernels/packed_matrix.h"
#include "model/expert_executor.h"
#include "model/mapped_repack.h"

namespace st {
namespace {

// Rows per work item: whole Q8_0 blocks of z (32) and whole packed groups
// (16). 64 gate + 64 up rows of Q4_0 at d_model 1536 are ~108 KB of
// weights, 128 down rows ~54 KB: a thread runs its own items in order, so
// they stream as one run, and the last item of a phase is a short wait.
constexpr size_t kGateUpRows = 64;
constexpr size_t kDownRows = 128;

// A matrix Run reads: packed, or rows in a K-quant format it computes in.
bool Readable(const MatrixRef& m) {
  return m.packed != nullptr || m.packed_kquant != nullptr || ComputedNatively(m);
}

// y[(v - v0) * y_stride + r] = row r of m . vector v of x, for v in [v0, v1)
// and the rows `rows[0, n_rows)` (null: r in [r0, r1), whole 16-row groups
// when packed; a packed matrix takes no row list, and a packed K-quant one
// with a row list is read in its rows, which a pack record lacks).
void RowDots(const MatrixRef& m, const Activations& x, size_t v0, size_t v1, size_t r0,
             size_t r1, float* y, size_t y_stride, const uint32_t* rows = nullptr,
             size_t n_rows = 0) {
  if (m.packed != nullptr) {
    PackedMatMulGroups(m.type, m.packed, m.cols, x, v0, v1, r0 / kPackRows, r1 / kPackRows, y,
                       y_stride);
    return;
  }
  if (m.packed_kquant != nullptr && rows == nullptr) {
    PackedKQuantMatMulGroups(m.storage->ggml_type, m.packed_kquant, m.cols, x, v0, v1,
                             r0 / kPackedKQuantRows, r1 / kPackedKQuantRows, y, y_stride);
    return;
  }
  DCHECK(m.data != nullptr) << "K-quant rows without a row-major view";
  thread_local std::vector<const BlockQ8_0*> xs;
  xs.clear();
  for (size_t v = v0; v < v1; ++v) xs.push_back(x.q8(v));
  if (rows != nullptr) {
    DotRowsKQuant(m.storage->ggml_type, m.data, m.row_bytes(), rows, n_rows, xs.data(), xs.size(),
                  m.cols, y, y_stride);
  } else {
    DotRowsKQuant(m.storage->ggml_type, m.row(r0), m.row_bytes(), nullptr, r1 - r0, xs.data(),
                  xs.size(), m.cols, y + r0, y_stride);
  }
}

}  // namespace

bool ExpertPhases::Supports(const ExpertStacks& s) {
  if (s.down_transposed || s.n_experts <= 0 || (s.gate.rows / s.n_experts) % kQK != 0) return false;
  for (const MatrixRef* m : {&s.gate, &s.up, &s.down}) {
    if (!Readable(*m)) return false;
  }
  return s.gate.packed == nullptr || s.up.packed == nullptr || s.gate.type == s.up.type;
}

bool ExpertPhases::Supports(const ExpertMatrices& m) {
  if (m.down_transposed || m.gate.rows % kQK != 0) return false;
  for (const MatrixRef* x : {&m.gate, &m.up, &m.down}) {
    if (!Readable(*x)) return false;
  }
  return m.gate.packed == nullptr || m.up.packed == nullptr || m.gate.type == m.up.type;
}

uint64_t ExpertPhases::ScratchBytes(size_t max_tokens, size_t top_k, size_t n_experts,
                                    size_t d_model, size_t d_expert) {
  // Q8_0 blocks of one vector of `cols` with their float scales and int sums
  // (Activations' buffers, which may round up to twice what they hold).
  auto q8_vec = [](size_t cols) { return 2 * (cols / kQK) * (sizeof(BlockQ8_0) + 8); };
  // Per slot: g, u [d_expert] and y [d_model] (grown to exactly their
  // size), its input vector and z's; per token: its vector.
  const uint64_t per_slot = uint64_t{4} * (2 * d_expert + d_model) + q8_vec(d_model) +
                            q8_vec(d_expert);
  const uint64_t per_token = q8_vec(d_model);
  return uint64_t{max_tokens} * (top_k * per_slot + per_token) +
         uint64_t{n_experts} * sizeof(Expert);
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
  std::atomic<uint64_t> active{0}, up_read{0};
  ForEachItem(used.size() * up_items, pool, [&](size_t item) {
    const Expert& ex = experts_[item / up_items];
    const size_t r0 = (item % up_items) * kGateUpRows;
    const size_t r1 = std::min(d_expert, r0 + kGateUpRows);
    float* g_ex = g_.data() + ex.v0 * d_expert;
    float* u_ex = u_.data() + ex.v0 * d_expert;
    RowDots(ex.gate, xq_, ex.v0, ex.v0 + ex.n, r0, r1, g_ex, d_expert);
    if (ex.up.packed != nullptr) {
      RowDots(ex.up, xq_, ex.v0, ex.v0 + ex.n, r0, r1, u_ex, d_expert);
      up_read.fetch_add(ex.n * (r1 - r0), std::memory_order_relaxed);
    } else {
      // In rows: only the up rows some slot's gate makes active (sparse
      // ReGLU); z is +0 wherever the gate is not positive, whatever u holds.
      thread_local std::vector<uint32_t> rows;
      rows.clear();
      for (size_t r = r0; r < r1; ++r) {
        bool any = false;
        for (size_t i = 0; i < ex.n; ++i) any = any || g_ex[i * d_expert + r] > 0.0f;
        if (any) rows.push_back(static_cast<uint32_t>(r));
      }
      for (size_t i = 0; i < ex.n; ++i) std::fill_n(u_ex + i * d_expert + r0, r1 - r0, 0.0f);
      if (!rows.empty()) {
        RowDots(ex.up, xq_, ex.v0, ex.v0 + ex.n, r0, r1, u_ex, d_expert, rows.data(), rows.size());
      }
      up_read.fetch_add(ex.n * rows.size(), std::memory_order_relaxed);
    }
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
    RowDots(ex.down, zq_, ex.v0, ex.v0 + ex.n, r0, r1, y, d_model);
    const std::vector<int>& slots = by_expert[ex.id];
    for (size_t i = 0; i < slots.size(); ++i) {
      std::memcpy(slot_out + static_cast<size_t>(slots[i]) * d_model + r0,
                  y + i * d_model + r0, (r1 - r0) * sizeof(float));
    }
  });

  if (sparsity != nullptr) {
    sparsity->active_rows += active.load();
    sparsity->total_rows += total * d_expert;
    sparsity->read_rows += up_read.load() + total * d_expert;  // down: every row
  }
}

}  // namespace st
