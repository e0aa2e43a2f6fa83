// Bytes of weights a decode step reads: the numerator of the memory roofline
// (tokens/s <= read bandwidth / bytes touched per token).
#pragma once

#include <cstdint>

#include "model/config.h"
#include "model/weights.h"

namespace st {

struct DecodeTraffic {
  uint64_t attention = 0;  // q, k, v, o projections of every layer
  uint64_t router = 0;     // router matrices
  uint64_t experts = 0;    // top_k experts per layer, every row (no sparsity yet)
  uint64_t lm_head = 0;    // output matrix
  uint64_t other = 0;      // norms and the embedding row
  uint64_t total() const { return attention + router + experts + lm_head + other; }
};

// Weight bytes one decoded token reads (KV cache reads excluded: they depend
// on the position and are small next to the weights at short contexts).
DecodeTraffic DecodeTrafficPerToken(const ModelConfig& config, const DenseWeights& weights);

}  // namespace st
