#include "model/expert_ffn.h"

#include <algorithm>
#include <vector>

#include "kernels/activation.h"
#include "kernels/axpy.h"
#include "kernels/split_rows.h"

namespace st {
namespace {

// Up rows where relu(gate) > 0 for a single token: dotted in runs of
// consecutive active rows, split over the pool. Inactive rows are left 0.
void SparseUp(const MatrixRef& up, const VecRef& x, const float* g, float* u, ThreadPool* pool,
              const std::vector<uint32_t>& active) {
  auto rows = [&](size_t begin, size_t end) {
    if (up.split_rows) {
      DotRowsIndexedSplitQ4_0(up.data, up.row_bytes(), active.data() + begin, end - begin, &x, 1,
                              u, up.rows);
      return;
    }
    size_t i = begin;
    while (i < end) {
      size_t j = i + 1;
      while (j < end && active[j] == active[j - 1] + 1) ++j;  // a run of consecutive rows
      // The next run starts elsewhere: fetch its first row while this one
      // is computed (the hardware prefetcher does not follow the jump).
      if (j < end) {
        const char* next = static_cast<const char*>(up.row(active[j]));
        for (size_t off = 0; off < up.row_bytes(); off += 64) __builtin_prefetch(next + off);
      }
      DotRows(up.type, up.row(active[i]), up.row_bytes(), j - i, x, u + active[i]);
      i = j;
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(active.size(), rows, 16);
  } else {
    rows(0, active.size());
  }
}

// The same for n vectors: u[i * u_stride + f] for every active row f.
void SparseUpMulti(const MatrixRef& up, const Activations& x, float* u, size_t u_stride,
                   ThreadPool* pool, const std::vector<uint32_t>& active) {
  std::vector<VecRef> vecs(x.n_vecs());
  for (size_t i = 0; i < vecs.size(); ++i) vecs[i] = x.vec(i);
  auto rows = [&](size_t begin, size_t end) {
    if (up.split_rows) {
      // At most 8 vectors per call, as MatMul and SparsePhases do: their
      // laid-out blocks stay in L1/L2 while the rows pass over them.
      constexpr size_t kVecChunk = 8;
      for (size_t i = 0; i < vecs.size(); i += kVecChunk) {
        DotRowsIndexedSplitQ4_0(up.data, up.row_bytes(), active.data() + begin, end - begin,
                                vecs.data() + i, std::min(kVecChunk, vecs.size() - i),
                                u + i * u_stride, u_stride);
      }
      return;
    }
    size_t i = begin;
    while (i < end) {
      size_t j = i + 1;
      while (j < end && active[j] == active[j - 1] + 1) ++j;
      DotRowsMulti(up.type, up.row(active[i]), up.row_bytes(), j - i, vecs.data(), vecs.size(),
                   u + active[i], u_stride);
      i = j;
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(active.size(), rows, 16);
  } else {
    rows(0, active.size());
  }
}

}  // namespace

void ExpertFfn(const ExpertMatrices& m, const float* x, int n, float* y, ThreadPool* pool,
               FfnSparsity* sparsity, bool sparse) {
  const size_t d_model = m.gate.cols, d_expert = m.gate.rows;
  std::vector<float> g(static_cast<size_t>(n) * d_expert), u(static_cast<size_t>(n) * d_expert);
  std::vector<uint32_t> active;
  Activations act;
  act.PrepareFor(m.gate.type, x, n, d_model);
  MatMul(m.gate, act, g.data(), pool);

  uint64_t n_active = 0;
  for (size_t i = 0; i < g.size(); ++i) n_active += g[i] > 0.0f;
  const uint64_t all_rows = static_cast<uint64_t>(n) * d_expert;
  uint64_t up_read = all_rows;  // rows of up read, per token
  if (m.up.packed != nullptr) {
    // Packed up (experts from a GGUF mapping): every row through the packed
    // kernels, which beat skipping rows in the row layout except when the
    // weights stream from memory; batch-invariant like every MatMul.
    MatMul(m.up, act, u.data(), pool);
  } else if ((sparse || m.up.split_rows) && n == 1) {
    // (Split rows have no MatMul: not sparse, every row through the row
    // kernel.)
    for (size_t f = 0; f < d_expert; ++f) {
      if (g[f] > 0.0f || !sparse) active.push_back(static_cast<uint32_t>(f));
    }
    SparseUp(m.up, act.vec(0), g.data(), u.data(), pool, active);
    if (sparse) up_read = n_active;
  } else {
    // Several tokens: up rows active for any of them, each read once for all
    // (multi-vector kernels, bit-identical to one vector at a time); when
    // nearly every row is active, the plain MatMul.
    if (sparse) {
      for (size_t f = 0; f < d_expert; ++f) {
        for (int i = 0; i < n; ++i) {
          if (g[static_cast<size_t>(i) * d_expert + f] > 0.0f) {
            active.push_back(static_cast<uint32_t>(f));
            break;
          }
        }
      }
    }
    if (sparse && active.size() * 10 < d_expert * 9) {
      SparseUpMulti(m.up, act, u.data(), d_expert, pool, active);
      up_read = n_active;  // each token's own active rows (read once for all)
    } else if (m.up.split_rows) {
      // Split rows have no MatMul: every row through the row kernel.
      active.resize(d_expert);
      for (size_t f = 0; f < d_expert; ++f) active[f] = static_cast<uint32_t>(f);
      SparseUpMulti(m.up, act, u.data(), d_expert, pool, active);
    } else {
      MatMul(m.up, act, u.data(), pool);
    }
  }
  if (sparsity != nullptr) {
    sparsity->active_rows += n_active;
    sparsity->total_rows += all_rows;
    // A transposed down is read only at rows where z != 0, i.e. the active ones.
    sparsity->read_rows += up_read + (m.down_transposed ? n_active : all_rows);
  }
  // z = relu(g) * u, exactly zero where the gate is not positive.
  ReluMulCount(g.data(), u.data(), g.size());

  if (!m.down_transposed) {
    Activations z;
    z.PrepareFor(m.down.type, g.data(), n, d_expert);
    MatMul(m.down, z, y, pool);  // [n, d_model]
    return;
  }
  // down stored as [d_expert, d_model]: y_i = sum_f z[i, f] * down.row(f)
  // over the active f only (in increasing f, as one AxpyRows call per token
  // and column range), with the d_model columns split over threads in whole
  // quant blocks.
  std::fill(y, y + static_cast<size_t>(n) * d_model, 0.0f);
  const float* z = g.data();
  std::vector<std::vector<uint32_t>> rows(n);
  std::vector<std::vector<float>> coef(n);
  for (int i = 0; i < n; ++i) {
    const float* zi = z + static_cast<size_t>(i) * d_expert;
    for (size_t f = 0; f < d_expert; ++f) {
      if (zi[f] == 0.0f) continue;
      rows[i].push_back(static_cast<uint32_t>(f));
      coef[i].push_back(zi[f]);
    }
  }
  auto columns = [&](size_t begin, size_t end) {
    const size_t offset = RowBytes(m.down.type, begin);
    for (int i = 0; i < n; ++i) {
      AxpyRows(m.down.type, m.down.data, m.down.row_bytes(), offset, rows[i].data(),
               coef[i].data(), rows[i].size(), y + i * d_model + begin, end - begin);
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(d_model, columns, BlockElems(m.down.type) * 8);
  } else {
    columns(0, d_model);
  }
}

}  // namespace st
