// scalar::AttendRing: reference twin of st::AttendRing (attention_simd.cc).
#include <algorithm>
#include <cmath>

#include "glog/logging.h"
#include "kernels/attention.h"

namespace st::scalar {

void AttendRing(const AttentionShape& shape, const float* q, const KvRingView& kv, int64_t lo,
                int64_t hi, float* out, float* scratch) {
  DCHECK(lo >= 0 && lo <= hi && hi - lo < kv.capacity) << lo << " " << hi;
  DCHECK_EQ(shape.n_heads % shape.n_kv_heads, 0);
  const int group = shape.n_heads / shape.n_kv_heads;
  const size_t hd = static_cast<size_t>(shape.head_dim);
  const float scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  const int64_t n_keys = hi - lo + 1;
  for (int h = 0; h < shape.n_heads; ++h) {
    const float* qh = q + h * hd;
    const size_t kv_off = static_cast<size_t>(h / group) * hd;
    float max = -INFINITY;
    for (int64_t i = 0; i < n_keys; ++i) {
      const float* k = kv.k + static_cast<size_t>((lo + i) % kv.capacity) * kv.row_stride + kv_off;
      float dot = 0.0f;
      for (size_t d = 0; d < hd; ++d) dot += qh[d] * k[d];
      scratch[i] = dot * scale;
      max = std::max(max, scratch[i]);
    }
    float sum = 0.0f;
    for (int64_t i = 0; i < n_keys; ++i) {
      scratch[i] = std::exp(scratch[i] - max);
      sum += scratch[i];
    }
    const float inv_sum = 1.0f / sum;
    float* oh = out + h * hd;
    std::fill(oh, oh + hd, 0.0f);
    for (int64_t i = 0; i < n_keys; ++i) {
      const float* v = kv.v + static_cast<size_t>((lo + i) % kv.capacity) * kv.row_stride + kv_off;
      const float p = scratch[i] * inv_sum;
      for (size_t d = 0; d < hd; ++d) oh[d] += p * v[d];
    }
  }
}

}  // namespace st::scalar
