// Scaled dot-product attention of one query token over a (ring) KV cache
// whose keys and values are stored as F32, F16 or BF16.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"

namespace st {

struct AttentionShape {
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // key/value heads; query head h uses kv head h / (n_heads / n_kv_heads)
  int head_dim = 0;
};

// Keys and values of one layer: position p lives in slot p % capacity, each
// slot holding n_kv_heads * head_dim elements of `type` (kF32, kF16 or kBF16)
// starting at element slot * row_stride of k (and v).
struct KvRingView {
  const void* k = nullptr;
  const void* v = nullptr;
  size_t row_stride = 0;  // in elements
  int64_t capacity = 0;
  DType type = DType::kF32;

  size_t elem_bytes() const { return type == DType::kF32 ? 4 : 2; }
  // The same ring restricted to the elements from `offset` on of every slot
  // (e.g. offset = kv_head * head_dim selects one kv head).
  KvRingView Columns(size_t offset) const {
    KvRingView r = *this;
    r.k = static_cast<const char*>(k) + offset * elem_bytes();
    r.v = static_cast<const char*>(v) + offset * elem_bytes();
    return r;
  }
};

// True for the element types a KV cache / KvRingView may hold.
inline bool IsKvType(DType type) {
  return type == DType::kF32 || type == DType::kF16 || type == DType::kBF16;
}

// out[h * head_dim + d] = sum_p softmax_p(q_h . k_p / sqrt(head_dim)) v_p[d],
// over key positions p in [lo, hi] (inclusive, hi - lo < capacity), summed in
// increasing p so the result does not depend on where the ring wraps. K/V
// elements are widened to float exactly; all arithmetic is in float.
// scratch holds at least hi - lo + 1 floats. Softmax in float with max
// subtraction.
void AttendRing(const AttentionShape& shape, const float* q, const KvRingView& kv, int64_t lo,
                int64_t hi, float* out, float* scratch);

namespace scalar {
void AttendRing(const AttentionShape& shape, const float* q, const KvRingView& kv, int64_t lo,
                int64_t hi, float* out, float* scratch);
}  // namespace scalar

}  // namespace st
