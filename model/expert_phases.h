// A step's experts, all at once, through the packed kernels (or K-quant
// rows) in two pool
// phases of small work items: (1) gate and up rows of every used expert plus
// z = relu(gate) * up and its Q8_0 blocks, (2) down rows of every used
// expert, scattered into the token slots. Each item is a slice of one
// expert's rows (64 gate/up rows, 128 down rows); ForEachItem gives each
// thread a contiguous run of items (one stream through memory) and lets a
// thread that is done take single items from the back of the others', so
// both cores stream weights until the phase ends and a thread that is
// descheduled holds up at most one small item
// (one expert per work item made a layer wait for a whole expert, or for
// several on a busy machine). Each token's layer input is quantized to Q8_0
// once and its blocks copied to every expert it visits.
//
// Numbers are those of ExpertFfn with packed matrices, bit for bit: the
// packed kernels give the same result for any split of the rows, and Q8_0
// quantizes each 32-element block on its own. K-quant rows (which ExpertFfn
// does not compute) likewise give the same numbers for any split, any
// number of slots and any set of active rows (DotRowsKQuant).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "common/thread_pool.h"
#include "kernels/matmul.h"
#include "model/expert_ffn.h"
#include "model/weights.h"

namespace st {

class ExpertPhases {
 public:
  // Whether Run can compute this layer: gate, up and down each packed (so
  // Q4_0 or Q8_0), Q4_K / Q6_K packed (`packed_kquant`: a K-quant file's gate and
  // down, kernels/packed_kquant.h) or in rows of Q4_K / Q6_K computed
  // natively (model/mapped_repack.h ComputedNatively; up rows are read only
  // where some slot's gate is positive), down not transposed, d_expert a
  // multiple of 32.
  static bool Supports(const ExpertStacks& s);

  // For every expert e in `used`, its slots by_expert[e] (token * top_k + j)
  // get Expert_e(h[token]) in slot_out [n_tokens * top_k, d_model].
  // h is [n_tokens, d_model]. `pool` may be null. `sparsity` (may be null)
  // counts active gate rows like ExpertFfn.
  void Run(const ExpertStacks& s, const std::vector<std::vector<int>>& by_expert,
           const std::vector<int>& used, int top_k, const float* h, int n_tokens,
           float* slot_out, ThreadPool* pool, FfnSparsity* sparsity);

  // The same for experts held one by one rather than as stacks (an expert
  // worker's store): matrices(e) gives expert e's matrices, each of which
  // must satisfy Supports below. Slot s reads row slot_rows[s] of h when
  // slot_rows is given (h then has n_rows rows), else row s / top_k.
  static bool Supports(const ExpertMatrices& m);
  void Run(const std::function<ExpertMatrices(int)>& matrices,
           const std::vector<std::vector<int>>& by_expert, const std::vector<int>& used,
           int top_k, const int32_t* slot_rows, const float* h, int n_rows, float* slot_out,
           ThreadPool* pool, FfnSparsity* sparsity);

  // Upper bound of the scratch Run keeps across calls of at most
  // `max_tokens` tokens (n_rows), `top_k` slots each, over `n_experts`
  // experts: what a memory budget must leave for it.
  static uint64_t ScratchBytes(size_t max_tokens, size_t top_k, size_t n_experts,
                               size_t d_model, size_t d_expert);

 private:
  // One expert's part of the call: its n slots, vectors [v0, v0 + n) of the
  // flat buffers below (sized for the call's slots in all, so the memory
  // kept between calls is that of the largest call).
  struct Expert {
    int id = 0;
    MatrixRef gate, up, down;
    size_t v0 = 0, n = 0;
  };

  Activations tokens_;
  std::vector<float> g_, u_;  // [slots, d_expert]; g becomes z
  std::vector<float> y_;      // [slots, d_model]
  Activations xq_, zq_;       // xq_: the slots' Q8_0 rows only (packed kernels read no f32)
  std::vector<Expert> experts_;
};

}  // namespace st
