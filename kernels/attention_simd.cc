// st::AttendRing with Highway dispatch. Per target and query head:
//  1. scores: q_h . k_p in float lanes (two MulAdd accumulators + scalar
//     tail), times 1/sqrt(head_dim), written to scratch;
//  2. softmax: max subtraction and std::exp per score (scalar, as the twin);
//  3. out_h = sum_p p_p v_p as MulAdd(Set(p_p), v_p, out_h) over increasing p,
//     so the order of summation is the same wherever the ring wraps.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <algorithm>
#include <cmath>

#include "glog/logging.h"
#include "kernels/attention.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {
namespace {

namespace hn = hwy::HWY_NAMESPACE;

float Dot(const float* a, const float* b, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  auto a0 = hn::Zero(df), a1 = hn::Zero(df);
  size_t j = 0;
  for (; j + 2 * N <= n; j += 2 * N) {
    a0 = hn::MulAdd(hn::LoadU(df, a + j), hn::LoadU(df, b + j), a0);
    a1 = hn::MulAdd(hn::LoadU(df, a + j + N), hn::LoadU(df, b + j + N), a1);
  }
  for (; j + N <= n; j += N) a0 = hn::MulAdd(hn::LoadU(df, a + j), hn::LoadU(df, b + j), a0);
  float tail = 0.0f;
  for (; j < n; ++j) tail += a[j] * b[j];
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, a1))) + tail;
}

// out[d] += p * v[d] for d < n.
void AddScaled(float p, const float* v, float* out, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  const auto vp = hn::Set(df, p);
  size_t j = 0;
  for (; j + N <= n; j += N) {
    hn::StoreU(hn::MulAdd(vp, hn::LoadU(df, v + j), hn::LoadU(df, out + j)), df, out + j);
  }
  for (; j < n; ++j) out[j] += p * v[j];
}

}  // namespace

void AttendRingT(const AttentionShape& shape, const float* q, const KvRingView& kv, int64_t lo,
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
      const size_t slot = static_cast<size_t>((lo + i) % kv.capacity);
      scratch[i] = Dot(qh, kv.k + slot * kv.row_stride + kv_off, hd) * scale;
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
      const size_t slot = static_cast<size_t>((lo + i) % kv.capacity);
      AddScaled(scratch[i] * inv_sum, kv.v + slot * kv.row_stride + kv_off, oh, hd);
    }
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(AttendRingT);

void AttendRing(const AttentionShape& shape, const float* q, const KvRingView& kv, int64_t lo,
                int64_t hi, float* out, float* scratch) {
  HWY_DYNAMIC_DISPATCH(AttendRingT)(shape, q, kv, lo, hi, out, scratch);
}

}  // namespace st
#endif  // HWY_ONCE
