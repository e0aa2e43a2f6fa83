// st::AttendRing with Highway dispatch, for F32, F16 and BF16 K/V. Query
// heads that share a kv head are processed in blocks of up to 8 on AVX-512
// (4 below), so each K and V chunk is loaded (and widened to float) once per
// block: SmallThinker's groups of 6 (4B) and 7 (21B) are one block each
// (session 19, until then 4 + 2 and 4 + 3; F16 medians of 3, alternated
// 3 times: 4B 4096 keys 514-521 -> 462-471 us, 1024 keys 110-117 -> 108-115;
// 21B 4096 keys 1239-1304 -> 1166-1306, 1024 keys 287-308 -> 281-293;
// bit-identical: each head's sums are the same operations in any block):
//  1. scores: q_h . k_p in float lanes (one MulAdd accumulator per head and
//     key; keys 4 at a time (3 for 7-8 heads, 2 below AVX-512), so each
//     query chunk is loaded once per pass and each head has independent
//     chains), a scalar tail for head_dim % lanes, times 1/sqrt(head_dim)
//     -> scratch; on AVX-512 four keys' lane sums at once (Reduce4, the
//     same pairs as _mm512_reduce_add_ps);
//  2. softmax: max subtraction and e^x per score by ExpF (exp_f32.h, glibc's
//     expf bit for bit), 16 scores at a time on AVX-512 (session 19: F16,
//     32 heads over 4 kv heads, 128 / 1024 / 4096 keys 44-48 -> 34-38,
//     364-409 -> 289-325, 1505-1848 -> 1199-1526 us, two alternations of
//     kernels_attention_benchmark; bit-identical outputs), the block's
//     heads' sums interleaved;
//  3. out_h = sum_p p_hp v_p as MulAdd(Set(p_hp), v_p, acc) over
//     increasing p, in tiles of up to 4 vectors of head dims with the
//     block's accumulators in registers, over chunks of 128 keys, so the
//     order of summation (per output element the twin's) does not depend on
//     where the ring wraps.
// Session 20 (all bit-identical to before: 0 of 722,160 outputs of a
// harness over 10 shapes, 3 KV types, 5 capacities and wrapping rings
// differ): the passes of 4 keys with the query chunk held in a register
// (GCC had folded its load into every MulAdd: 14 loads per 12 MulAdds),
// Reduce4 with accumulators the compiler keeps in registers, interleaved
// softmax sums (one head's chain of dependent adds was ~3/4 of the
// softmax), then prefetch and V chunks, for decode above all, whose K/V
// come from DRAM (prefill's are mostly in L3). F16 medians of 3, the
// previous and this kernel alternated twice: 4B 1024 keys 116-118 -> 79-86
// us, 4096 keys 473-479 -> 319-351; 21B 1024 keys 283-288 -> 201-218, 4096
// keys 1660-1755 -> 888-1009 (kernels_attention_benchmark, one thread).
// Session 11 changed only the loop structure (numbers bit-identical to
// before): pairs of keys (now passes of 4) in 1 and tiles of 4 vectors in 3, where one chain
// per head and key was latency-bound and one vector per pass read every V
// row 8 times over: F16, 32 heads over 4 kv heads, 1024 keys 475 -> 287 us,
// 4096 keys 2051 -> 1400 us (kernels_attention_benchmark, medians of 3).
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
#include <cstdint>
#include <vector>

#include "glog/logging.h"
#include "kernels/attention.h"
#include "kernels/exp_f32.h"
#include "kernels/fp16.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {
namespace {

namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;

#include "kernels/widen16-inl.h"

// x86 below AVX-512 has 16 vector registers, the other targets 32: that
// sets the query heads per block (heads sharing a kv head whose K and V
// chunks are loaded and widened once) and Values' tile width.
#if HWY_ARCH_X86 && HWY_TARGET > HWY_AVX3
constexpr bool kSixteenRegisters = true;
#else
constexpr bool kSixteenRegisters = false;
#endif
constexpr int kMaxBlock = kSixteenRegisters ? 4 : 8;

// Element access per K/V storage type: a widened SIMD load and a scalar get.
struct F32E {
  using T = float;
  static HWY_INLINE hn::Vec<DF> Load(DF df, const T* p) { return hn::LoadU(df, p); }
  static float Get(const T* p, size_t i) { return p[i]; }
};
struct F16E {
  using T = uint16_t;
  static HWY_INLINE hn::Vec<DF> Load(DF df, const T* p) {
    return Widen16(df, reinterpret_cast<const hwy::float16_t*>(p));
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

// Makes the compiler keep v in a register: GCC otherwise folds the load
// into every MulAdd that uses it, one load per use (x86 can take one
// memory operand per instruction), and Scores' loop was bound by loads.
template <class V>
HWY_INLINE void InRegister(V& v) {
#if HWY_ARCH_X86 && HWY_TARGET != HWY_EMU128 && HWY_TARGET != HWY_SCALAR && \
    (defined(__GNUC__) || defined(__clang__))
  asm("" : "+v"(v.raw));
#else
  (void)v;
#endif
}

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr bool kReduce4 = true;
// The lane sums of a, b, c and d in lanes 0, 1, 2 and 3, each bit-identical
// to _mm512_reduce_add_ps (what SumOfLanes is here): the same additions of
// the same pairs (256-bit halves, 128-bit quarters, lanes 2 apart, then the
// first two), four sums per instruction instead of one.
inline __m128 Reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
  // 128-bit quarters 2,3 (high half) and 0,1 of each of two inputs.
  const __m512 ab =
      _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0xEE), _mm512_shuffle_f32x4(a, b, 0x44));
  const __m512 cd =
      _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0xEE), _mm512_shuffle_f32x4(c, d, 0x44));
  // Quarters 1 and 3 (each half's high quarter) and 0 and 2.
  const __m512 t6 =
      _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0xDD), _mm512_shuffle_f32x4(ab, cd, 0x88));
  const __m512 t8 = _mm512_add_ps(t6, _mm512_permute_ps(t6, 0x4E));
  const __m512 r = _mm512_add_ps(t8, _mm512_permute_ps(t8, 0xB1));
  return _mm512_castps512_ps128(
      _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), r));
}
// s[0 .. kp) = (lane sum of acc[p * stride_acc] + 0) * scale, for kp <= 4
// keys of one head, as Scores' per-key finish computes them.
template <int KP>
HWY_INLINE void StoreScores(const hn::Vec<DF>* acc, int stride_acc, float scale, float* s) {
  static_assert(KP >= 2 && KP <= 4, "2 to 4 keys");
  const __m512 z = _mm512_setzero_ps();
  const __m128 sums = Reduce4(acc[0].raw, acc[stride_acc].raw, KP > 2 ? acc[2 * stride_acc].raw : z,
                              KP > 3 ? acc[3 * stride_acc].raw : z);
  const __m128 v = _mm_mul_ps(_mm_add_ps(sums, _mm_setzero_ps()), _mm_set1_ps(scale));
  _mm_mask_storeu_ps(s, static_cast<__mmask8>((1u << KP) - 1), v);
}
#else
constexpr bool kReduce4 = false;
template <int KP>
HWY_INLINE void StoreScores(const hn::Vec<DF>*, int, float, float*) {}
#endif

// Rows kPrefetchKeys keys ahead are prefetched into L2 as Scores and Values
// walk the cache: at decode, a layer's K and V come from DRAM (32 layers at
// 4096 keys are 128 MiB on the 4B), and a head's part of each row (256
// bytes at head_dim 128 in F16, every n_kv_heads * 256 bytes) is a stream
// the hardware prefetchers did not follow well. Session 20,
// BM_AttendRingColdLayers (4 KiB pages, one thread, 4B, 4096 keys): 23.9-
// 24.5 ms per token without, 17.9-18.5 with 16 or 32 keys ahead into L2
// (into L1: 18.5-23.0); 8 keys ahead was slower, 48 no better.
constexpr int64_t kPrefetchKeys = 32;

// Prefetches row_bytes of each of the n rows kPrefetchKeys rows after p
// (rows stride elements apart). Addresses past the end of the cache (near
// the end of a run) are harmless: prefetches do not fault, and the address
// is formed as an integer.
template <class T>
HWY_INLINE void PrefetchRowsAhead(const T* p, int n, size_t stride, size_t row_bytes) {
  for (int r = 0; r < n; ++r) {
    const uintptr_t row = reinterpret_cast<uintptr_t>(p) + (kPrefetchKeys + r) * stride * sizeof(T);
    for (size_t b = 0; b < row_bytes; b += 64) {
      __builtin_prefetch(reinterpret_cast<const void*>(row + b), 0, 2);  // into L2
    }
  }
}

// Keys per pass of Scores for a block of NH heads: each pass holds
// NH * KP accumulators, the KP keys' chunks and one query chunk in
// registers, so a query chunk is loaded once per KP keys (32 registers: 4
// keys up to 6 heads, 3 up to 8; 16 registers: 2 keys up to 4 heads).
template <int NH>
constexpr int KeysPerPass() {
  if constexpr (kSixteenRegisters) return 2;
  return NH <= 6 ? 4 : 3;
}

// For NH query heads q[g * hd ...] and the keys of `runs` (n_keys in all):
// s[g * n_keys + i] = scale * q_g . k_i. Keys go KP at a time (KP
// independent MulAdd chains per head; each K chunk loaded and widened once
// per block, each query chunk once per pass); every score is the same
// operations in any pass width, so results do not depend on KP.
template <class E, int NH, int KP>
HWY_INLINE void ScoresPass(const float* q, size_t hd, size_t j_end, const typename E::T* k,
                           size_t stride, hn::Vec<DF>* acc) {
  const DF df;
  const size_t N = hn::Lanes(df);
#pragma GCC unroll 32
  for (int a = 0; a < NH * KP; ++a) acc[a] = hn::Zero(df);
  for (size_t j = 0; j < j_end; j += N) {
    hn::Vec<DF> x[KP];
#pragma GCC unroll 4
    for (int p = 0; p < KP; ++p) x[p] = E::Load(df, k + p * stride + j);
#pragma GCC unroll 8
    for (int g = 0; g < NH; ++g) {
      auto qg = hn::LoadU(df, q + g * hd + j);
      InRegister(qg);
#pragma GCC unroll 4
      for (int p = 0; p < KP; ++p) acc[p * NH + g] = hn::MulAdd(qg, x[p], acc[p * NH + g]);
    }
  }
}

template <class E, int NH>
void Scores(const float* q, size_t hd, const Run<typename E::T>* runs, int n_runs, size_t stride,
            int64_t n_keys, float scale, float* s) {
  constexpr int KP = KeysPerPass<NH>();
  const size_t row_bytes = hd * sizeof(typename E::T);
  const DF df;
  const size_t N = hn::Lanes(df);
  size_t j_end = hd - hd % N;
  auto finish = [&](const hn::Vec<DF>* acc, const typename E::T* k, int64_t i) {
    for (int g = 0; g < NH; ++g) {
      float tail = 0.0f;
      for (size_t t = j_end; t < hd; ++t) tail += q[g * hd + t] * E::Get(k, t);
      s[g * n_keys + i] = (hn::GetLane(hn::SumOfLanes(df, acc[g])) + tail) * scale;
    }
  };
  int64_t i = 0;
  for (int r = 0; r < n_runs; ++r) {
    const typename E::T* k = runs[r].base;
    int64_t e = 0;
    for (; e + KP <= runs[r].n; e += KP, i += KP, k += KP * stride) {
      PrefetchRowsAhead(k, KP, stride, row_bytes);
      if (kReduce4 && j_end == hd) {
        // Its own accumulators, indexed by constants only, so they stay in
        // registers (finish's loop would put them in memory).
        hn::Vec<DF> acc[NH * KP];
        ScoresPass<E, NH, KP>(q, hd, j_end, k, stride, acc);
#pragma GCC unroll 8
        for (int g = 0; g < NH; ++g) StoreScores<KP>(acc + g, NH, scale, s + g * n_keys + i);
      } else {
        hn::Vec<DF> acc[NH * KP];
        ScoresPass<E, NH, KP>(q, hd, j_end, k, stride, acc);
#pragma GCC unroll 4
        for (int p = 0; p < KP; ++p) finish(acc + p * NH, k + p * stride, i + p);
      }
    }
    for (; e < runs[r].n; ++e, ++i, k += stride) {
      hn::Vec<DF> acc[NH];
      ScoresPass<E, NH, 1>(q, hd, j_end, k, stride, acc);
      finish(acc, k, i);
    }
  }
}

// Columns [j0, j0 + NC * lanes) of out[g * hd + d] += sum_i p[g * n_keys + i]
// * v_i[d] over keys i0 .. i0 + count (v: key i0's row), summed in
// increasing i, starting from zero when `first`: keys outer, the tile's
// NH * NC accumulators in registers, so each key's V columns are read once
// per tile. With `prefetch`, the head's part of each row (row_bytes)
// kPrefetchKeys keys ahead is prefetched.
template <class E, int NH, int NC>
HWY_INLINE void ValuesTile(const float* p, size_t hd, const typename E::T* v, int64_t count,
                           int64_t i0, size_t stride, int64_t n_keys, size_t j0, bool first,
                           size_t row_bytes, bool prefetch, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  hn::Vec<DF> acc[NH * NC];
#pragma GCC unroll 8
  for (int g = 0; g < NH; ++g) {
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) {
      acc[g * NC + c] = first ? hn::Zero(df) : hn::LoadU(df, out + g * hd + j0 + c * N);
    }
  }
  for (int64_t i = i0; i < i0 + count; ++i, v += stride) {
    if (prefetch) PrefetchRowsAhead(v, 1, stride, row_bytes);
    hn::Vec<DF> x[NC];
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) x[c] = E::Load(df, v + j0 + c * N);
#pragma GCC unroll 8
    for (int g = 0; g < NH; ++g) {
      const auto pg = hn::Set(df, p[g * n_keys + i]);
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) acc[g * NC + c] = hn::MulAdd(pg, x[c], acc[g * NC + c]);
    }
  }
#pragma GCC unroll 8
  for (int g = 0; g < NH; ++g) {
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) hn::StoreU(acc[g * NC + c], df, out + g * hd + j0 + c * N);
  }
}

// Keys per chunk of Values: a chunk's V rows (32 KiB of F16 at head_dim 128)
// stay in L1/L2 while every column tile passes over them, so V is read from
// memory once (the first tile's pass prefetches the head's part of each
// row).
constexpr int64_t kValuesChunk = 128;

// out[g * hd + d] = sum_i p[g * n_keys + i] * v_i[d], summed in increasing
// i, in tiles of up to 4 vectors of head dims (2 on x86 below AVX-512; each
// key's columns of a tile are one short contiguous read, where a tile of one
// vector per pass read every key's row 8 times over at head_dim 128), over
// chunks of kValuesChunk keys (a tile's sums go through out between chunks:
// the same operations in the same order).
template <class E, int NH>
void Values(const float* p, size_t hd, const Run<typename E::T>* runs, int n_runs, size_t stride,
            int64_t n_keys, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  // 16 registers: tiles of 2 vectors (4 heads x 4 vectors of accumulators
  // plus the loads would spill); 32: up to 6 heads x 4 vectors, 7-8 x 2.
  constexpr int kTile = kSixteenRegisters || NH > 6 ? 2 : 4;
  const size_t j_tiles = hd - hd % (kTile * N), j_vecs = hd - hd % N;
  const size_t row_bytes = hd * sizeof(typename E::T);
  int64_t i0 = 0;
  for (int r = 0; r < n_runs; ++r) {
    for (int64_t c0 = 0; c0 < runs[r].n; c0 += kValuesChunk) {
      const typename E::T* v = runs[r].base + static_cast<size_t>(c0) * stride;
      const int64_t count = std::min(kValuesChunk, runs[r].n - c0);
      const bool first = i0 == 0;
      size_t j = 0;
      for (; j < j_tiles; j += kTile * N) {
        ValuesTile<E, NH, kTile>(p, hd, v, count, i0, stride, n_keys, j, first, row_bytes, j == 0,
                                 out);
      }
      for (; j < j_vecs; j += N) {
        ValuesTile<E, NH, 1>(p, hd, v, count, i0, stride, n_keys, j, first, row_bytes, j == 0,
                             out);
      }
      i0 += count;
    }
  }
  for (size_t j = j_vecs; j < hd; ++j) {
    for (int g = 0; g < NH; ++g) {
      float o = 0.0f;
      int64_t i = 0;
      for (int r = 0; r < n_runs; ++r) {
        const typename E::T* v = runs[r].base;
        for (int64_t e = 0; e < runs[r].n; ++e, ++i, v += stride) {
          o += p[g * n_keys + i] * E::Get(v, j);
        }
      }
      out[g * hd + j] = o;
    }
  }
}

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
// ExpF (kernels/exp_f32.h) of 8 floats in double lanes, with ExpF's
// constants and its order of fused operations, so bit-identical to it; the
// table lookup is two 16-entry permutes and a blend.
inline __m256 Exp8(__m256 x) {
  using namespace expf_data;
  auto d = [](uint64_t bits) { return _mm512_set1_pd(AsDouble(bits)); };
  auto table = [](int from) { return _mm512_loadu_si512(kTable + from); };
  const __m512d xd = _mm512_cvtps_pd(x);
  const __m512d shifted = _mm512_fmadd_pd(xd, d(kInvLn2N), d(kShift));
  const __m512i ki = _mm512_castpd_si512(shifted);
  const __m512d kd = _mm512_sub_pd(shifted, d(kShift));
  const __m512d r = _mm512_fmsub_pd(d(kInvLn2N), xd, kd);
  const __m512i t_lo = _mm512_permutex2var_epi64(table(0), ki, table(8));    // ki % 16
  const __m512i t_hi = _mm512_permutex2var_epi64(table(16), ki, table(24));  // 16 + ki % 16
  const __mmask8 upper = _mm512_test_epi64_mask(ki, _mm512_set1_epi64(16));
  const __m512i t = _mm512_add_epi64(_mm512_mask_blend_epi64(upper, t_lo, t_hi),
                                     _mm512_slli_epi64(ki, 47));
  const __m512d z = _mm512_fmadd_pd(r, d(kC0), d(kC1));
  const __m512d r2 = _mm512_mul_pd(r, r);
  __m512d y = _mm512_fmadd_pd(r, d(kC2), _mm512_set1_pd(1.0));
  y = _mm512_fmadd_pd(z, r2, y);
  return _mm512_cvtpd_ps(_mm512_mul_pd(y, _mm512_castsi512_pd(t)));
}

// e[i] = ExpF(s[i] - max) for 16 lanes (e may be s); lanes ExpF hands to std::exp
// (|s - max| >= 88, e.g. a key far below the best one) are redone one by one.
inline void Exp16(const float* s, float max, float* e) {
  const __m512 x = _mm512_sub_ps(_mm512_loadu_ps(s), _mm512_set1_ps(max));
  const __m512i bits = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff));
  const __mmask16 far = _mm512_cmpge_epu32_mask(bits, _mm512_set1_epi32(0x42b00000));
  alignas(64) float xs[16];  // s - max, kept: e may be s itself
  if (far != 0) _mm512_store_ps(xs, x);
  const __m256 lo = Exp8(_mm512_castps512_ps256(x));
  const __m256 hi = Exp8(_mm512_extractf32x8_ps(x, 1));
  _mm512_storeu_ps(e, _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1));
  for (unsigned m = far; m != 0; m &= m - 1) {
    const int i = __builtin_ctz(m);
    e[i] = ExpF(xs[i]);
  }
}
constexpr int64_t kExpLanes = 16;
#else
constexpr int64_t kExpLanes = 0;  // scalar ExpF only
inline void Exp16(const float*, float, float*) {}
#endif

// For each of NH heads, s[g * n .. g * n + n) = softmax of itself in place,
// with the scalar twin's numbers: the max (lane-wise: exact in any order),
// ExpF of s - max (16 lanes at a time on AVX-512, bit-identical to ExpF),
// summed in increasing order, then each times 1 / sum (lane-wise: exact per
// element). The sum is one chain of dependent adds per head, so the heads'
// chains are interleaved (session 20: a lone chain was ~3/4 of the
// softmax's time). (Highway's Exp with a lane-wise sum was faster still but
// moved results by an ulp, enough to flip a near-tie expert choice of a
// tiny golden model past that test's statistical bounds.)
template <int NH>
void SoftmaxHeads(float* s, int64_t n) {
  const DF df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  float max[NH], sum[NH];
  for (int g = 0; g < NH; ++g) {
    const float* sg = s + g * n;
    auto vmax = hn::Set(df, -INFINITY);
    int64_t i = 0;
    for (; i + N <= n; i += N) vmax = hn::Max(vmax, hn::LoadU(df, sg + i));
    max[g] = hn::GetLane(hn::MaxOfLanes(df, vmax));
    for (; i < n; ++i) max[g] = std::max(max[g], sg[i]);
    sum[g] = 0.0f;
  }
  int64_t i = 0;
  if constexpr (kExpLanes > 0) {
    for (; i + kExpLanes <= n; i += kExpLanes) {
#pragma GCC unroll 8
      for (int g = 0; g < NH; ++g) Exp16(s + g * n + i, max[g], s + g * n + i);
#pragma GCC unroll 16
      for (int64_t k = i; k < i + kExpLanes; ++k) {
#pragma GCC unroll 8
        for (int g = 0; g < NH; ++g) sum[g] += s[g * n + k];
      }
    }
  }
  for (; i < n; ++i) {
    for (int g = 0; g < NH; ++g) {
      float& e = s[g * n + i];
      e = ExpF(e - max[g]);
      sum[g] += e;
    }
  }
  for (int g = 0; g < NH; ++g) {
    float* sg = s + g * n;
    const float inv_sum = 1.0f / sum[g];
    const auto inv = hn::Set(df, inv_sum);
    for (i = 0; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(df, sg + i), inv), df, sg + i);
    for (; i < n; ++i) sg[i] *= inv_sum;
  }
}

// Attention for NH consecutive query heads (starting at q / out) that share
// the kv head whose elements start at column kv_off. s: NH * n_keys floats.
template <class E, int NH>
void Block(const float* q, const KvRingView& kv, size_t kv_off, size_t hd, int64_t lo,
           int64_t n_keys, float scale, float* out, float* s) {
  static_assert(NH >= 1 && NH <= kMaxBlock, "blocks of 1 to kMaxBlock heads");
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
  SoftmaxHeads<NH>(s, n_keys);
  Values<E, NH>(s, hd, vruns, n_runs, kv.row_stride, n_keys, out);
}

// Block<E, nh> for a run-time nh in [1, NH].
template <class E, int NH>
void BlockOf(int nh, const float* q, const KvRingView& kv, size_t kv_off, size_t hd, int64_t lo,
             int64_t n_keys, float scale, float* out, float* s) {
  if constexpr (NH > 1) {
    if (nh < NH) return BlockOf<E, NH - 1>(nh, q, kv, kv_off, hd, lo, n_keys, scale, out, s);
  }
  Block<E, NH>(q, kv, kv_off, hd, lo, n_keys, scale, out, s);
}

template <class E>
void Attend(const AttentionShape& shape, const float* q, const KvRingView& kv, int64_t lo,
            int64_t hi, float* out, float* scratch) {
  const int group = shape.n_heads / shape.n_kv_heads;
  const size_t hd = static_cast<size_t>(shape.head_dim);
  const float scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  const int64_t n_keys = hi - lo + 1;
  thread_local std::vector<float> block_scratch;
  if (block_scratch.size() < static_cast<size_t>(kMaxBlock * n_keys)) {
    block_scratch.resize(static_cast<size_t>(kMaxBlock * n_keys));
  }
  for (int kvh = 0; kvh < shape.n_kv_heads; ++kvh) {
    const size_t kv_off = static_cast<size_t>(kvh) * hd;
    for (int g0 = 0; g0 < group;) {
      const int h = kvh * group + g0;
      const float* qh = q + h * hd;
      float* oh = out + h * hd;
      const int nh = std::min(group - g0, kMaxBlock);
      BlockOf<E, kMaxBlock>(nh, qh, kv, kv_off, hd, lo, n_keys, scale, oh,
                            nh == 1 ? scratch : block_scratch.data());
      g0 += nh;
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
