// Scaled dot-product attention of one query token over a (ring) KV cache.
#pragma once

#include <cstddef>
#include <cstdint>

namespace st {

struct AttentionShape {
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // key/value heads; query head h uses kv head h / (n_heads / n_kv_heads)
  int head_dim = 0;
};

// Keys and values of one layer: position p lives in slot p % capacity, each
// slot holding n_kv_heads * head_dim floats at k + slot * row_stride (and v).
struct KvRingView {
  const float* k = nullptr;
  const float* v = nullptr;
  size_t row_stride = 0;
  int64_t capacity = 0;
};

// out[h * head_dim + d] = sum_p softmax_p(q_h . k_p / sqrt(head_dim)) v_p[d],
// over key positions p in [lo, hi] (inclusive, hi - lo < capacity), summed in
// increasing p so the result does not depend on where the ring wraps.
// scratch holds at least hi - lo + 1 floats. Softmax in float with max
// subtraction.
void AttendRing(const AttentionShape& shape, const float* q, const KvRingView& kv, int64_t lo,
                int64_t hi, float* out, float* scratch);

namespace scalar {
void AttendRing(const AttentionShape& shape, const float* q, const KvRingView& kv, int64_t lo,
                int64_t hi, float* out, float* scratch);
}  // namespace scalar

}  // namespace st
