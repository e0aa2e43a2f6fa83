// st::AttendRing with Highway dispatch, for F32, F16 and BF16 K/V. Query
// heads that share a kv head are processed in blocks of up to 4, so each K
// and V chunk is loaded (and widened to float) once per block:
//  1. scores: q_h . k_p in float lanes (one MulAdd accumulator per head, a
//     scalar tail for head_dim % lanes), times 1/sqrt(head_dim) -> scratch;
//  2. softmax: max subtraction and std::exp per score (scalar, as the twin);
//  3. out_h = sum_p p_hp v_p as MulAdd(Set(p_hp), v_p, out_h) over
//     increasing p, so the order of summation (per output element exactly
//     the twin's) does not depend on where the ring wraps.
// Blocks of more than one head keep their scores in a thread-local buffer
// (the caller's scratch holds one head's).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "glog/logging.h"
#include "kernels/attention.h"
#include "kernels/fp16.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {
namespace {

namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;

// Element access per K/V storage type: a widened SIMD load and a scalar get.
struct F32E {
  using T = float;
  static HWY_INLINE hn::Vec<DF> Load(DF df, const T* p) { return hn::LoadU(df, p); }
  static float Get(const T* p, size_t i) { return p[i]; }
};
struct F16E {
  using T = uint16_t;
  static HWY_INLINE hn::Vec<DF> Load(DF df, const T* p) {
    const hn::Rebind<hwy::float16_t, DF> dh;
    return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
  }
  static float Get(const T* p, size_t i) { return F16ToF32(p[i]); }
};
struct BF16E {
  using T = uint16_t;
  static HWY_INLINE hn::Vec<DF> Load(DF df, const T* p) {
    const hn::Rebind<hwy::bfloat16_t, DF> db;
    return hn::PromoteTo(df, hn::LoadU(db, reinterpret_cast<const hwy::bfloat16_t*>(p)));
  }
  static float Get(const T* p, size_t i) { return BF16ToF32(p[i]); }
};

// For NH query heads q[g * hd ...] and keys i in [0, n_keys): scores
// s[g * n_keys + i] = scale * q_g . k_i, where k_i = key(i).
template <class E, int NH, class KeyAt>
void Scores(const float* q, size_t hd, int64_t n_keys, KeyAt key, float scale, float* s) {
  const DF df;
  const size_t N = hn::Lanes(df);
  for (int64_t i = 0; i < n_keys; ++i) {
    const typename E::T* k = key(i);
    hn::Vec<DF> acc[NH];
    for (int g = 0; g < NH; ++g) acc[g] = hn::Zero(df);
    size_t j = 0;
    for (; j + N <= hd; j += N) {
      const auto kj = E::Load(df, k + j);
      for (int g = 0; g < NH; ++g) acc[g] = hn::MulAdd(hn::LoadU(df, q + g * hd + j), kj, acc[g]);
    }
    for (int g = 0; g < NH; ++g) {
      float tail = 0.0f;
      for (size_t t = j; t < hd; ++t) tail += q[g * hd + t] * E::Get(k, t);
      s[g * n_keys + i] = (hn::GetLane(hn::SumOfLanes(df, acc[g])) + tail) * scale;
    }
  }
}

// out[g * hd + d] += sum_i p[g * n_keys + i] * v_i[d], in increasing i.
template <class E, int NH, class ValAt>
void Values(const float* p, size_t hd, int64_t n_keys, ValAt val, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  for (int64_t i = 0; i < n_keys; ++i) {
    const typename E::T* v = val(i);
    size_t j = 0;
    for (; j + N <= hd; j += N) {
      const auto vj = E::Load(df, v + j);
      for (int g = 0; g < NH; ++g) {
        float* o = out + g * hd + j;
        hn::StoreU(hn::MulAdd(hn::Set(df, p[g * n_keys + i]), vj, hn::LoadU(df, o)), df, o);
      }
    }
    for (int g = 0; g < NH; ++g) {
      for (size_t t = j; t < hd; ++t) out[g * hd + t] += p[g * n_keys + i] * E::Get(v, t);
    }
  }
}

// Attention for NH consecutive query heads (starting at q / out) that share
// the kv head whose elements start at column kv_off. s: NH * n_keys floats.
template <class E, int NH>
void Block(const float* q, const KvRingView& kv, size_t kv_off, size_t hd, int64_t lo,
           int64_t n_keys, float scale, float* out, float* s) {
  using T = typename E::T;
  const T* ks = static_cast<const T*>(kv.k) + kv_off;
  const T* vs = static_cast<const T*>(kv.v) + kv_off;
  auto slot = [&](int64_t i) { return static_cast<size_t>((lo + i) % kv.capacity) * kv.row_stride; };
  Scores<E, NH>(q, hd, n_keys, [&](int64_t i) { return ks + slot(i); }, scale, s);
  for (int g = 0; g < NH; ++g) {
    float* sg = s + g * n_keys;
    float max = -INFINITY;
    for (int64_t i = 0; i < n_keys; ++i) max = std::max(max, sg[i]);
    float sum = 0.0f;
    for (int64_t i = 0; i < n_keys; ++i) {
      sg[i] = std::exp(sg[i] - max);
      sum += sg[i];
    }
    const float inv_sum = 1.0f / sum;
    for (int64_t i = 0; i < n_keys; ++i) sg[i] *= inv_sum;
  }
  std::fill(out, out + NH * hd, 0.0f);
  Values<E, NH>(s, hd, n_keys, [&](int64_t i) { return vs + slot(i); }, out);
}

template <class E>
void Attend(const AttentionShape& shape, const float* q, const KvRingView& kv, int64_t lo,
            int64_t hi, float* out, float* scratch) {
  constexpr int kBlock = 4;
  const int group = shape.n_heads / shape.n_kv_heads;
  const size_t hd = static_cast<size_t>(shape.head_dim);
  const float scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  const int64_t n_keys = hi - lo + 1;
  thread_local std::vector<float> block_scratch;
  if (block_scratch.size() < static_cast<size_t>(kBlock * n_keys)) {
    block_scratch.resize(static_cast<size_t>(kBlock * n_keys));
  }
  for (int kvh = 0; kvh < shape.n_kv_heads; ++kvh) {
    const size_t kv_off = static_cast<size_t>(kvh) * hd;
    for (int g0 = 0; g0 < group;) {
      const int h = kvh * group + g0;
      const float* qh = q + h * hd;
      float* oh = out + h * hd;
      const int left = group - g0;
      if (left >= 4) {
        Block<E, 4>(qh, kv, kv_off, hd, lo, n_keys, scale, oh, block_scratch.data());
        g0 += 4;
      } else if (left == 3) {
        Block<E, 3>(qh, kv, kv_off, hd, lo, n_keys, scale, oh, block_scratch.data());
        g0 += 3;
      } else if (left == 2) {
        Block<E, 2>(qh, kv, kv_off, hd, lo, n_keys, scale, oh, block_scratch.data());
        g0 += 2;
      } else {
        Block<E, 1>(qh, kv, kv_off, hd, lo, n_keys, scale, oh, scratch);
        g0 += 1;
      }
    }
  }
}

}  // namespace

void AttendRingT(const AttentionShape& shape, const float* q, const KvRingView& kv, int64_t lo,
                 int64_t hi, float* out, float* scratch) {
  DCHECK(lo >= 0 && lo <= hi && hi - lo < kv.capacity) << lo << " " << hi;
  DCHECK_EQ(shape.n_heads % shape.n_kv_heads, 0);
  switch (kv.type) {
    case DType::kF16:
      return Attend<F16E>(shape, q, kv, lo, hi, out, scratch);
    case DType::kBF16:
      return Attend<BF16E>(shape, q, kv, lo, hi, out, scratch);
    default:
      DCHECK(kv.type == DType::kF32) << DTypeName(kv.type);
      return Attend<F32E>(shape, q, kv, lo, hi, out, scratch);
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
