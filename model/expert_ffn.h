// One ReGLU expert FFN, y = down(relu(gate x) * up x), with neuron sparsity:
// up rows (and, for a transposed down, down rows) are only computed where
// relu(gate x) > 0. Skipped rows contribute exactly zero in the dense
// formula too, so the sparse result is bit-identical to computing every row
// with the same kernels (tested against the dense path).
#pragma once

#include <cstdint>

#include "common/thread_pool.h"
#include "kernels/matmul.h"

namespace st {

// The three matrices of one expert. gate and up are [d_expert, d_model];
// down is [d_model, d_expert], or [d_expert, d_model] when down_transposed
// (the pack's layout, and PowerInfer GGUFs).
struct ExpertMatrices {
  MatrixRef gate, up, down;
  bool down_transposed = false;
};

// Neuron activity counted by ExpertFfn and the phase executors: rows whose
// relu(gate) was > 0, out of all (token, row) pairs; and the up and down
// rows the computation read for those pairs: every row on paths that compute
// them all (packed GGUF experts), only the active ones where inactive rows
// are skipped (row-layout up, transposed down: the expert pack).
struct FfnSparsity {
  uint64_t active_rows = 0;
  uint64_t total_rows = 0;
  uint64_t read_rows = 0;  // up rows plus down rows read, at most 2 * total_rows
  double active_fraction() const {
    return total_rows ? static_cast<double>(active_rows) / total_rows : 0.0;
  }
  // The share of up and down bytes read: what the memory roofline counts.
  double read_fraction() const {
    return total_rows ? static_cast<double>(read_rows) / (2.0 * total_rows) : 1.0;
  }
  FfnSparsity& operator+=(const FfnSparsity& o) {
    active_rows += o.active_rows;
    total_rows += o.total_rows;
    read_rows += o.read_rows;
    return *this;
  }
};

// y[i, :] = Expert(x[i, :]) for n token rows; x and y are [n, d_model].
// `pool` may be null. `sparsity` (may be null) is incremented. `sparse`
// false computes every up row (reference path for tests and benchmarks).
void ExpertFfn(const ExpertMatrices& m, const float* x, int n, float* y, ThreadPool* pool,
               FfnSparsity* sparsity = nullptr, bool sparse = true);

}  // namespace st
