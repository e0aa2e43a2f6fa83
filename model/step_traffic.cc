#include "model/step_traffic.h"

#include "model/traffic.h"

namespace st {

uint64_t ExpertBytes(const ModelConfig& c) {
  return 3ull * c.d_expert * RowBytes(c.expert_type, c.d_model);
}

StepRoofline DecodeStepRoofline(const ModelConfig& config, const DenseWeights& weights,
                                int tokens, const DecodeStepCounters& c, double bandwidth_gbps) {
  StepRoofline r;
  r.tokens = tokens;
  r.steps = c.steps;
  if (c.steps == 0) return r;
  const DecodeTraffic t = DecodeTrafficPerToken(config, weights);
  const double steps = static_cast<double>(c.steps);
  // The embedding row (in `other`) is read once per token; the rest once per step.
  const double embd_row = static_cast<double>(weights.token_embd.row_bytes());
  r.dense_bytes = static_cast<double>(t.total() - t.experts) + (tokens - 1) * embd_row;
  r.experts_per_layer = c.experts_touched / steps / config.n_layers;
  r.expert_bytes = c.experts_touched / steps * static_cast<double>(ExpertBytes(config));
  r.kv_bytes = c.kv_bytes / steps;
  r.bound_tps = bandwidth_gbps * 1e9 * tokens / r.step_bytes();
  r.step_tps = c.seconds > 0 ? tokens * steps / c.seconds : 0;
  return r;
}

}  // namespace st
