// st::AttendRing with Highway dispatch, for F32, F16 and BF16 K/V. Query
// heads that share a kv head are processed in blocks of up to 4, so each K
// and V chunk is loaded (and widened to float) once per block:
//  1. scores: q_h . k_p in float lanes (one MulAdd accumulator per head, a
//     scalar tail for head_dim % lanes), times 1/sqrt(head_dim) -> scratch;
//  2. softmax: max subtraction and std::exp per score (scalar, as the twin);
//  3. out_h = sum_p p_hp v_p as MulAdd(Set(p_hp), v_p, acc) over
//     increasing p, one vector of head dims at a time with the block's
//     accumulators in registers, so the order of summation (per output
//     element the twin's) does not depend on where the ring wraps.
// The window is walked as at most two runs of consecutive slots (before and
// after the ring wraps), with no per-key modulo.
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

// A run of keys in consecutive ring slots: key i of the run is at
// base + i * stride. A window [lo, hi] is at most two runs (before and after
// the ring wraps), so no per-key modulo is needed.
template <class T>
struct Run {
  const T* base;
  int64_t n;
};

// For NH query heads q[g * hd ...] and the keys of `runs` (n_keys in all):
// s[g * n_keys + i] = scale * q_g . k_i.
template <class E, int NH>
void Scores(const float* q, size_t hd, const Run<typename E::T>* runs, int n_runs, size_t stride,
            int64_t n_keys, float scale, float* s) {
  const DF df;
  const size_t N = hn::Lanes(df);
  int64_t i = 0;
  for (int r = 0; r < n_runs; ++r) {
    const typename E::T* k = runs[r].base;
    for (int64_t e = 0; e < runs[r].n; ++e, ++i, k += stride) {
      auto a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0;  // named: kept in registers
      size_t j = 0;
      for (; j + N <= hd; j += N) {
        const auto kj = E::Load(df, k + j);
        a0 = hn::MulAdd(hn::LoadU(df, q + j), kj, a0);
        if constexpr (NH > 1) a1 = hn::MulAdd(hn::LoadU(df, q + hd + j), kj, a1);
        if constexpr (NH > 2) a2 = hn::MulAdd(hn::LoadU(df, q + 2 * hd + j), kj, a2);
        if constexpr (NH > 3) a3 = hn::MulAdd(hn::LoadU(df, q + 3 * hd + j), kj, a3);
      }
      const hn::Vec<DF> acc[4] = {a0, a1, a2, a3};
      for (int g = 0; g < NH; ++g) {
        float tail = 0.0f;
        for (size_t t = j; t < hd; ++t) tail += q[g * hd + t] * E::Get(k, t);
        s[g * n_keys + i] = (hn::GetLane(hn::SumOfLanes(df, acc[g])) + tail) * scale;
      }
    }
  }
}

// out[g * hd + d] = sum_i p[g * n_keys + i] * v_i[d], summed in increasing
// i. One vector of head dims at a time, the NH accumulators stay in
// registers across all keys.
template <class E, int NH>
void Values(const float* p, size_t hd, const Run<typename E::T>* runs, int n_runs, size_t stride,
            int64_t n_keys, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  size_t j = 0;
  for (; j + N <= hd; j += N) {
    auto a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0;  // named: kept in registers
    const float* p0 = p;
    const float* p1 = p + n_keys;
    const float* p2 = p + 2 * n_keys;
    const float* p3 = p + 3 * n_keys;
    int64_t i = 0;
    for (int r = 0; r < n_runs; ++r) {
      const typename E::T* v = runs[r].base + j;
      for (int64_t e = 0; e < runs[r].n; ++e, ++i, v += stride) {
        const auto vj = E::Load(df, v);
        a0 = hn::MulAdd(hn::Set(df, p0[i]), vj, a0);
        if constexpr (NH > 1) a1 = hn::MulAdd(hn::Set(df, p1[i]), vj, a1);
        if constexpr (NH > 2) a2 = hn::MulAdd(hn::Set(df, p2[i]), vj, a2);
        if constexpr (NH > 3) a3 = hn::MulAdd(hn::Set(df, p3[i]), vj, a3);
      }
    }
    hn::StoreU(a0, df, out + j);
    if constexpr (NH > 1) hn::StoreU(a1, df, out + hd + j);
    if constexpr (NH > 2) hn::StoreU(a2, df, out + 2 * hd + j);
    if constexpr (NH > 3) hn::StoreU(a3, df, out + 3 * hd + j);
  }
  for (; j < hd; ++j) {
    for (int g = 0; g < NH; ++g) {
      float o = 0.0f;
      int64_t i = 0;
      for (int r = 0; r < n_runs; ++r) {
        const typename E::T* v = runs[r].base;
        for (int64_t e = 0; e < runs[r].n; ++e, ++i, v += stride) o += p[g * n_keys + i] * E::Get(v, j);
      }
      out[g * hd + j] = o;
    }
  }
}

// Attention for NH consecutive query heads (starting at q / out) that share
// the kv head whose elements start at column kv_off. s: NH * n_keys floats.
template <class E, int NH>
void Block(const float* q, const KvRingView& kv, size_t kv_off, size_t hd, int64_t lo,
           int64_t n_keys, float scale, float* out, float* s) {
  static_assert(NH >= 1 && NH <= 4, "blocks of 1 to 4 heads");
  using T = typename E::T;
  const int64_t first = lo % kv.capacity;
  const int64_t n1 = std::min(n_keys, kv.capacity - first);
  auto runs_of = [&](const void* base, Run<T>* runs) {
    const T* b = static_cast<const T*>(base) + kv_off;
    runs[0] = Run<T>{b + static_cast<size_t>(first) * kv.row_stride, n1};
    runs[1] = Run<T>{b, n_keys - n1};
    return n_keys > n1 ? 2 : 1;
  };
  Run<T> kruns[2], vruns[2];
  const int n_runs = runs_of(kv.k, kruns);
  runs_of(kv.v, vruns);
  Scores<E, NH>(q, hd, kruns, n_runs, kv.row_stride, n_keys, scale, s);
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
  Values<E, NH>(s, hd, vruns, n_runs, kv.row_stride, n_keys, out);
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
