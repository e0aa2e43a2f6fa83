#include "model/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "glog/logging.h"

namespace st {

KvCache::KvCache(const ModelConfig& config, int64_t max_tokens, int max_batch)
    : kv_dim_(config.kv_dim()), max_tokens_(max_tokens), max_batch_(std::max(max_batch, 1)) {
  CHECK_GE(max_tokens, 1) << "KvCache needs room for at least one token";
  layers_.resize(config.n_layers);
  for (int l = 0; l < config.n_layers; ++l) {
    const int64_t window = config.layers[l].window;
    int64_t cap = max_tokens;
    if (window > 0) cap = std::min(max_tokens, window + max_batch_ - 1);
    layers_[l].capacity = cap;
    layers_[l].k.assign(static_cast<size_t>(cap) * kv_dim_, 0.0f);
    layers_[l].v.assign(static_cast<size_t>(cap) * kv_dim_, 0.0f);
  }
}

size_t KvCache::bytes() const {
  size_t total = 0;
  for (const Layer& l : layers_) total += (l.k.size() + l.v.size()) * sizeof(float);
  return total;
}

size_t KvCache::BytesFor(const ModelConfig& config, int64_t max_tokens, int max_batch) {
  size_t total = 0;
  for (int l = 0; l < config.n_layers; ++l) {
    const int64_t window = config.layers[l].window;
    int64_t cap = max_tokens;
    if (window > 0) cap = std::min(max_tokens, window + std::max(max_batch, 1) - 1);
    total += 2 * static_cast<size_t>(cap) * config.kv_dim() * sizeof(float);
  }
  return total;
}

void KvCache::Store(int layer, int64_t pos, const float* k, const float* v) {
  Layer& l = layers_[layer];
  const size_t slot = static_cast<size_t>(pos % l.capacity);
  std::memcpy(l.k.data() + slot * kv_dim_, k, kv_dim_ * sizeof(float));
  std::memcpy(l.v.data() + slot * kv_dim_, v, kv_dim_ * sizeof(float));
}

KvRingView KvCache::View(int layer) const {
  const Layer& l = layers_[layer];
  return KvRingView{l.k.data(), l.v.data(), static_cast<size_t>(kv_dim_), l.capacity};
}

}  // namespace st
