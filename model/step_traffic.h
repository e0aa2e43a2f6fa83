// The memory roofline of a batched decode step (continuous batching): the
// bytes one step of N single-token sequences actually touched — the dense
// weights once, the union of the experts its tokens routed to (measured from
// the real routes), and every sequence's own K/V reads — and the bound that
// puts on aggregate tokens/s at a given read bandwidth.
#pragma once

#include <cstdint>

#include "model/config.h"
#include "model/weights.h"

namespace st {

// Counters of pure decode steps (every sequence of the step has exactly one
// token) of one batch size, accumulated by Forward over calls.
struct DecodeStepCounters {
  uint64_t steps = 0;
  uint64_t experts_touched = 0;  // sum over steps and layers of distinct experts routed to
  uint64_t kv_bytes = 0;         // K and V bytes attention read, all steps
  double seconds = 0;            // wall time of those steps (embedding to logits)

  DecodeStepCounters operator-(const DecodeStepCounters& o) const {
    return {steps - o.steps, experts_touched - o.experts_touched, kv_bytes - o.kv_bytes,
            seconds - o.seconds};
  }
};

struct StepRoofline {
  int tokens = 0;                   // tokens (= sequences) per step
  uint64_t steps = 0;
  double experts_per_layer = 0;     // mean distinct experts a step touched per layer
  double dense_bytes = 0;           // attention, router, LM head, norms, embedding rows
  double expert_bytes = 0;          // mean per step: the union of routed experts, whole
  double kv_bytes = 0;              // mean per step
  double step_bytes() const { return dense_bytes + expert_bytes + kv_bytes; }
  double bound_tps = 0;             // bandwidth * tokens / step_bytes
  double step_tps = 0;              // tokens * steps / seconds: the steps' own rate
};

// Bytes of one whole expert (gate, up and down) of the model's expert type.
uint64_t ExpertBytes(const ModelConfig& config);

// The roofline of `c` (a difference of counters over a measured span) for
// steps of `tokens` tokens at `bandwidth_gbps` (1e9 bytes/s). Experts count
// whole: every row of a touched expert is read (the in-RAM GGUF path; the
// pack's sparse path reads fewer, and bench-serve says so there).
StepRoofline DecodeStepRoofline(const ModelConfig& config, const DenseWeights& weights,
                                int tokens, const DecodeStepCounters& c, double bandwidth_gbps);

}  // namespace st
