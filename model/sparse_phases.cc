#include "model/sparse_phases.h"

#include <algorithm>
#include <atomic>

#include "glog/logging.h"
#include "kernels/axpy.h"
#include "kernels/dot.h"
#include "kernels/packed_matrix.h"
#include "kernels/split_rows.h"

namespace st {
namespace {

// Rows per phase-1 item (whole 16-row packed groups): 128 gate rows and up
// to 128 up rows of Q4_0 at d_model 1536 are ~110 KB + ~55 KB at half
// activity.
constexpr size_t kGateUpRows = 128;
// Phase-2 items split d_model in whole 8-block AxpyRows tiles (256
// columns), no finer than about two items per thread need:
// AxpyRows reads whole rows when it covers the full width, and a slice's
// first and last cache lines are read again by its neighbours. 4b shapes,
// one thread, half the rows from DRAM (kernels_sparse_rows_benchmark,
// session 13): Q4_0 33.6 us at 1536 columns per call, 37.5 at 768, 40 at
// 256; Q8_0 40, 51 and 75 us.
constexpr size_t kDownTileCols = 256;
// Vectors per DotRowsMulti call (MatMul's kVecChunk).
constexpr size_t kVecChunk = 8;

// The indices and values of v's non-zero entries among [0, n), increasing
// (branch-free: about half are non-zero, at random); returns how many.
size_t NonZeros(const float* v, size_t n, uint32_t* idx, float* val) {
  size_t count = 0;
  for (size_t f = 0; f < n; ++f) {
    idx[count] = static_cast<uint32_t>(f);
    val[count] = v[f];
    count += v[f] != 0.0f;
  }
  return count;
}

}  // namespace

bool SparsePhases::Supports(const ExpertMatrices& m) {
  const DType t = m.gate.type;
  return m.down_transposed && m.gate.packed != nullptr && m.up.data != nullptr &&
         m.down.data != nullptr && (t == DType::kQ4_0 || t == DType::kQ8_0) &&
         m.up.type == t && m.down.type == t && m.gate.rows % kPackRows == 0 &&
         (!m.up.split_rows || t == DType::kQ4_0) &&
         m.up.rows == m.gate.rows && m.down.rows == m.gate.rows &&
         m.up.cols == m.gate.cols && m.down.cols == m.gate.cols;
}

uint64_t SparsePhases::ScratchBytes(size_t max_tokens, size_t top_k, size_t n_experts,
                                    size_t d_model, size_t d_expert) {
  // Q8_0 blocks of one vector with their float scales and int sums
  // (Activations' buffers, which may round up to twice what they hold).
  const uint64_t q8_vec = 2 * (d_model / kQK) * (sizeof(BlockQ8_0) + 8);
  // Per slot: g and u [d_expert] (each grown to exactly its size) and its
  // vector; per token: its row of h, its vector and its row index.
  const uint64_t per_slot = uint64_t{4} * 2 * d_expert + q8_vec;
  const uint64_t per_token = uint64_t{4} * d_model + q8_vec + 2 * sizeof(int);
  return uint64_t{max_tokens} * (top_k * per_slot + per_token) +
         uint64_t{n_experts} * sizeof(Expert);
}

void SparsePhases::Run(const std::vector<ExpertMatrices>& experts,
                       const std::vector<const std::vector<int>*>& slots, int top_k,
                       const float* h, int n_tokens, float* slot_out, ThreadPool* pool,
                       FfnSparsity* sparsity) {
  if (experts.empty()) return;
  const size_t d_model = experts[0].gate.cols, d_expert = experts[0].gate.rows;
  const size_t up_items = (d_expert + kGateUpRows - 1) / kGateUpRows;
  size_t total = 0;
  for (const auto* sl : slots) total += sl->size();
  ResizeScratch(g_, total * d_expert);
  ResizeScratch(u_, total * d_expert);
  // Each token the call uses quantized once (top_k slots share it; callers
  // may pass one expert of a step at a time, so only the tokens it uses).
  // Q8_0 quantizes each block alone: a copied vector equals quantizing the
  // slot's row itself.
  token_row_.assign(n_tokens, -1);
  used_tokens_.clear();
  used_tokens_.reserve(n_tokens);  // what ScratchBytes counts
  for (const auto* sl : slots) {
    for (int slot : *sl) {
      DCHECK_LT(slot / top_k, n_tokens);
      int& row = token_row_[slot / top_k];
      if (row < 0) {
        row = static_cast<int>(used_tokens_.size());
        used_tokens_.push_back(slot / top_k);
      }
    }
  }
  ResizeScratch(token_x_, used_tokens_.size() * d_model);
  for (size_t r = 0; r < used_tokens_.size(); ++r) {
    std::copy_n(h + static_cast<size_t>(used_tokens_[r]) * d_model, d_model,
                token_x_.data() + r * d_model);
  }
  tokens_.Prepare(token_x_.data(), used_tokens_.size(), d_model, /*need_q8=*/true);
  xq_.Allocate(/*x=*/nullptr, total, d_model);  // filled by CopyVec
  experts_.resize(experts.size());
  size_t at = 0;  // first slot of expert k in the flat buffers
  for (size_t k = 0; k < experts.size(); ++k) {
    const std::vector<int>& sl = *slots[k];
    Expert& ex = experts_[k];
    ex.n = sl.size();
    ex.g = g_.data() + at * d_expert;
    ex.u = u_.data() + at * d_expert;
    ex.v0 = at;
    for (size_t i = 0; i < ex.n; ++i) xq_.CopyVec(at + i, tokens_, token_row_[sl[i] / top_k]);
    at += ex.n;
  }

  // Phase 1: gate rows, up rows active for some token, z = relu(g) * u.
  std::atomic<uint64_t> active{0};
  ForEachItem(experts.size() * up_items, pool, [&](size_t item) {
    const ExpertMatrices& m = experts[item / up_items];
    Expert& ex = experts_[item / up_items];
    const size_t r0 = (item % up_items) * kGateUpRows;
    const size_t r1 = std::min(d_expert, r0 + kGateUpRows);
    const size_t n = ex.n;
    PackedMatMulGroups(m.gate.type, m.gate.packed, d_model, xq_, ex.v0, ex.v0 + n,
                       r0 / kPackRows, r1 / kPackRows, ex.g, d_expert);
    // Rows whose gate is positive for any token (branch-free: about half
    // the rows are active, at random), then their up rows.
    uint8_t any[kGateUpRows] = {};
    uint64_t on = 0;
    for (size_t i = 0; i < n; ++i) {
      const float* g = ex.g + i * d_expert;
      for (size_t f = r0; f < r1; ++f) {
        const bool pos = g[f] > 0.0f;
        on += pos;
        any[f - r0] |= pos;
      }
    }
    uint32_t rows[kGateUpRows];
    size_t n_rows = 0;
    for (size_t f = r0; f < r1; ++f) {
      rows[n_rows] = static_cast<uint32_t>(f);
      n_rows += any[f - r0];
    }
    VecRef vecs_small[4];
    std::vector<VecRef> vecs_big;
    VecRef* vecs = vecs_small;
    if (n > 4) {
      vecs_big.resize(n);
      vecs = vecs_big.data();
    }
    // Q8_0 only (xq_ has no f32 rows; the types SparsePhases supports are
    // block-quantized).
    for (size_t i = 0; i < n; ++i) vecs[i] = VecRef{nullptr, xq_.q8(ex.v0 + i), d_model};
    // At most kVecChunk vectors per call, as MatMul does: their prepared
    // blocks stay in L1/L2 while the rows pass over them.
    for (size_t i = 0; i < n; i += kVecChunk) {
      if (m.up.split_rows) {
        DotRowsIndexedSplitQ4_0(m.up.data, m.up.row_bytes(), rows, n_rows, vecs + i,
                                std::min(kVecChunk, n - i), ex.u + i * d_expert, d_expert);
      } else {
        DotRowsIndexed(m.up.type, m.up.data, m.up.row_bytes(), rows, n_rows, vecs + i,
                       std::min(kVecChunk, n - i), ex.u + i * d_expert, d_expert);
      }
    }
    // z = relu(g) * u as ExpertFfn computes it, in place of g (phase 2
    // lists each token's rows with z != 0 from it). Rows outside `rows`
    // have g <= 0 for every token, so their stale u is never used.
    for (size_t i = 0; i < n; ++i) {
      float* g = ex.g + i * d_expert;
      const float* u = ex.u + i * d_expert;
      for (size_t f = r0; f < r1; ++f) g[f] = g[f] > 0.0f ? g[f] * u[f] : 0.0f;
    }
    active.fetch_add(on, std::memory_order_relaxed);
  });

  // Phase 2: each token's down^T rows with z != 0, into its slot's columns.
  const size_t tiles = (d_model + kDownTileCols - 1) / kDownTileCols;
  const size_t threads = pool != nullptr ? static_cast<size_t>(pool->num_threads()) : 1;
  const size_t slices =  // per expert: about two items per thread, in whole tiles
      std::clamp<size_t>((2 * threads + experts.size() - 1) / experts.size(), 1, tiles);
  const size_t slice_tiles = (tiles + slices - 1) / slices;
  const size_t down_cols = slice_tiles * kDownTileCols;
  const size_t down_items = (d_model + down_cols - 1) / down_cols;
  ForEachItem(experts.size() * down_items, pool, [&](size_t item) {
    const ExpertMatrices& m = experts[item / down_items];
    const Expert& ex = experts_[item / down_items];
    const std::vector<int>& sl = *slots[item / down_items];
    const size_t c0 = (item % down_items) * down_cols;
    const size_t c1 = std::min(d_model, c0 + down_cols);
    const size_t offset = RowBytes(m.down.type, c0);
    // Each token's rows with z != 0, increasing, in one list so that one
    // AxpyRows call streams them all (its row prefetch runs across phase
    // 1's slices). It is also ExpertFfn's list: the grouped Q4_0 AxpyRows
    // groups the rows of the list it is given.
    thread_local std::vector<uint32_t> rows;
    thread_local std::vector<float> coef;
    rows.resize(d_expert);
    coef.resize(d_expert);
    for (size_t i = 0; i < sl.size(); ++i) {
      const size_t count = NonZeros(ex.g + i * d_expert, d_expert, rows.data(), coef.data());
      float* y = slot_out + static_cast<size_t>(sl[i]) * d_model + c0;
      std::fill(y, y + (c1 - c0), 0.0f);
      AxpyRows(m.down.type, m.down.data, m.down.row_bytes(), offset, rows.data(), coef.data(),
               count, y, c1 - c0);
    }
  });

  if (sparsity != nullptr) {
    sparsity->active_rows += active.load();
    sparsity->total_rows += total * d_expert;
    sparsity->read_rows += 2 * active.load();  // up and down^T rows where z != 0
  }
}

}  // namespace st
