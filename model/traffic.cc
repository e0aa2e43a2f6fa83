#include "model/traffic.h"

namespace st {
namespace {
uint64_t Bytes(const MatrixRef& m) { return static_cast<uint64_t>(m.rows) * m.row_bytes(); }
}  // namespace

DecodeTraffic DecodeTrafficPerToken(const ModelConfig& c, const DenseWeights& w) {
  DecodeTraffic t;
  for (const LayerWeights& l : w.layers) {
    t.attention += Bytes(l.wq) + Bytes(l.wk) + Bytes(l.wv) + Bytes(l.wo);
    t.router += Bytes(l.router);
    t.other += (l.attn_norm.size() + l.ffn_norm.size()) * sizeof(float);
  }
  const uint64_t one_expert = 3ull * c.d_expert * RowBytes(c.expert_type, c.d_model);
  t.experts = static_cast<uint64_t>(c.n_layers) * c.top_k * one_expert;
  t.lm_head = Bytes(w.output);
  t.other += w.token_embd.row_bytes() + w.output_norm.size() * sizeof(float);
  return t;
}

}  // namespace st
