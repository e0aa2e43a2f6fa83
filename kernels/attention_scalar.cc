// scalar::AttendRing: reference twin of st::AttendRing (attention_simd.cc).
#include <algorithm>
#include <cmath>

#include "glog/logging.h"
#include "kernels/attention.h"
#include "kernels/exp_f32.h"
#include "kernels/fp16.h"

namespace st::scalar {
namespace {

struct F32 {
  using T = float;
  static float Get(const T* p, size_t i) { return p[i]; }
};
struct F16 {
  using T = uint16_t;
  static float Get(const T* p, size_t i) { return F16ToF32(p[i]); }
};
struct BF16 {
  using T = uint16_t;
  static float Get(const T* p, size_t i) { return BF16ToF32(p[i]); }
};

template <class E>
void Attend(const AttentionShape& shape, const float* q, const KvRingView& kv, int64_t lo,
            int64_t hi, float* out, float* scratch) {
  using T = typename E::T;
  const int group = shape.n_heads / shape.n_kv_heads;
  const size_t hd = static_cast<size_t>(shape.head_dim);
  const float scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  const int64_t n_keys = hi - lo + 1;
  const T* ks = static_cast<const T*>(kv.k);
  const T* vs = static_cast<const T*>(kv.v);
  for (int h = 0; h < shape.n_heads; ++h) {
    const float* qh = q + h * hd;
    const size_t kv_off = static_cast<size_t>(h / group) * hd;
    float max = -INFINITY;
    for (int64_t i = 0; i < n_keys; ++i) {
      const T* k = ks + static_cast<size_t>((lo + i) % kv.capacity) * kv.row_stride + kv_off;
      float dot = 0.0f;
      for (size_t d = 0; d < hd; ++d) dot += qh[d] * E::Get(k, d);
      scratch[i] = dot * scale;
      max = std::max(max, scratch[i]);
    }
    float sum = 0.0f;
    for (int64_t i = 0; i < n_keys; ++i) {
      scratch[i] = ExpF(scratch[i] - max);
      sum += scratch[i];
    }
    const float inv_sum = 1.0f / sum;
    float* oh = out + h * hd;
    std::fill(oh, oh + hd, 0.0f);
    for (int64_t i = 0; i < n_keys; ++i) {
      const T* v = vs + static_cast<size_t>((lo + i) % kv.capacity) * kv.row_stride + kv_off;
      const float p = scratch[i] * inv_sum;
      for (size_t d = 0; d < hd; ++d) oh[d] += p * E::Get(v, d);
    }
  }
}

}  // namespace

void AttendRing(const AttentionShape& shape, const float* q, const KvRingView& kv, int64_t lo,
                int64_t hi, float* out, float* scratch) {
  DCHECK(lo >= 0 && lo <= hi && hi - lo < kv.capacity) << lo << " " << hi;
  DCHECK_EQ(shape.n_heads % shape.n_kv_heads, 0);
  switch (kv.type) {
    case DType::kF16:
      return Attend<F16>(shape, q, kv, lo, hi, out, scratch);
    case DType::kBF16:
      return Attend<BF16>(shape, q, kv, lo, hi, out, scratch);
    default:
      DCHECK(kv.type == DType::kF32) << DTypeName(kv.type);
      return Attend<F32>(shape, q, kv, lo, hi, out, scratch);
  }
}

}  // namespace st::scalar
