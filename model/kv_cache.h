// Per-sequence key/value cache: a flat buffer per global layer and a ring per
// sliding-window layer.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/attention.h"
#include "model/config.h"

namespace st {

// Position p of layer l lives in slot p % capacity(l). Global layers have
// capacity = max_tokens; sliding-window layers keep window + max_batch - 1
// slots, enough for every query of a batch of up to max_batch new tokens to
// see its whole window while the batch's own keys are being written.
// Thread-compatible.
class KvCache {
 public:
  // max_tokens >= 1 and max_batch >= 1 (checked).
  KvCache(const ModelConfig& config, int64_t max_tokens, int max_batch);

  int64_t max_tokens() const { return max_tokens_; }
  // The largest batch the rings were sized for (see class comment).
  int max_batch() const { return max_batch_; }
  int64_t capacity(int layer) const { return layers_[layer].capacity; }
  size_t bytes() const;
  // What bytes() will be for a cache built with these arguments.
  static size_t BytesFor(const ModelConfig& config, int64_t max_tokens, int max_batch);

  // Stores the k and v rows (kv_dim floats each) of position `pos`.
  void Store(int layer, int64_t pos, const float* k, const float* v);
  KvRingView View(int layer) const;

 private:
  struct Layer {
    int64_t capacity = 0;
    std::vector<float> k, v;  // [capacity, kv_dim]
  };
  int kv_dim_;
  int64_t max_tokens_;
  int max_batch_;
  std::vector<Layer> layers_;
};

}  // namespace st
