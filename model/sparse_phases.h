// A step's sparse ReGLU experts (the expert pack's layout: gate in the 16-row
// packed layout, up and down^T in rows), all at once, in two pool phases of
// small work items, like ExpertPhases does for the dense GGUF path:
//   (1) per expert and 128-row slice of d_expert: the gate rows (packed
//       kernel), the up rows where relu(gate) > 0 for some token of the
//       expert (row-layout dot products), z = relu(gate) * up;
//   (2) per expert and slice of d_model (the whole width when the step has
//       two experts per thread, else whole 256-column tiles): every
//       token's y = sum_f z[f] * down^T.row(f) over its f with z[f] != 0,
//       straight into the token's slot.
// Items are claimed one at a time by whichever thread is free, so both cores
// stream weights until a phase ends: two fork-joins per layer instead of
// three per expert.
//
// Numbers are ExpertFfn's (down_transposed), bit for bit: every up row is
// one DotRow (split rows: one DotRowsIndexedSplitQ4_0 row, the same for any
// row list or vector grouping) whatever run or thread computes it, relu and z are elementwise,
// and AxpyRows gives the same result for any split of the columns in whole
// blocks given the same row list (tested in sparse_phases_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/thread_pool.h"
#include "kernels/matmul.h"
#include "model/expert_executor.h"
#include "model/expert_ffn.h"

namespace st {

class SparsePhases {
 public:
  // Whether Run can compute an expert with these matrices: gate packed,
  // up and down^T in rows ([d_expert, d_model]), one quantized type
  // (Q4_0/Q8_0), down transposed.
  static bool Supports(const ExpertMatrices& m);

  // For every k, Expert_k (matrices experts[k], which Supports) of the rows
  // h[slots[k][i] / top_k] goes to slot_out row slots[k][i]; slot_out is
  // [n_slots, d_model], h [n_tokens, d_model]. `pool` may be null.
  // `sparsity` (may be null) counts active gate rows like ExpertFfn.
  void Run(const std::vector<ExpertMatrices>& experts,
           const std::vector<const std::vector<int>*>& slots, int top_k, const float* h,
           int n_tokens, float* slot_out, ThreadPool* pool, FfnSparsity* sparsity);

  // Upper bound of the scratch Run keeps across calls of at most
  // `max_tokens` tokens, `top_k` slots each, over `n_experts` experts: what
  // a memory budget must leave for it.
  static uint64_t ScratchBytes(size_t max_tokens, size_t top_k, size_t n_experts,
                               size_t d_model, size_t d_expert);

 private:
  // One expert's part of the call's scratch: its n slots' rows of the flat
  // buffers below (each sized for the call's slots in all, so the memory
  // kept between calls is that of the largest call, not the sum of every
  // expert position's largest).
  struct Expert {
    size_t n = 0;
    float* g = nullptr;  // [n, d_expert]; becomes z
    float* u = nullptr;  // [n, d_expert]
    size_t v0 = 0;       // its first vector in xq_
  };

  // The call's distinct tokens (their rows of h, in first use order), each
  // quantized once; every slot's vector in xq_ is a copy of its token's.
  std::vector<int> token_row_;  // [n_tokens] row in tokens_, or -1
  std::vector<int> used_tokens_;
  std::vector<float> token_x_, g_, u_;
  Activations tokens_;
  Activations xq_;  // Q8_0 only (no f32 view): one vector per slot of the call
  std::vector<Expert> experts_;
};

}  // namespace st
