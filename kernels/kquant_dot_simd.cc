// st::DotRowsKQuant: Q4_K / Q6_K rows x Q8_0 vectors, one set of kernels per
// Highway target (run-time dispatch).
//
//  AVX3_DL / AVX3: two 32-weight blocks per 512-bit register, as the Q4_0
//    kernels of dot_q8-inl.h: u8 weight levels x s8 activation levels into
//    int32 lanes (VNNI dpbusd, or maddubs + madd), then per lane the float
//    scale of its block. Q4_K: one 32-byte load holds two sub-blocks (low
//    and high nibbles); the mins meet each block's d_x * sum(x), computed
//    once per vector, in one 8-lane multiply-add per super-block. Q6_K: 64
//    bytes of low bits and 32 of high bits hold four blocks; the -32 offset
//    is -32 * sum(x) per 4 lanes, the start value of dpbusd; the 16-weight
//    sub-blocks' scales are 4 lanes each.
//  AVX2: ggml's maddubs method, one 32-weight block per 256-bit register.
//  Other targets (SSE4, NEON, ...): Highway generic code, int16 lanes
//    (ReorderWidenMulAccumulate), one vector at a time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/kquant_dot_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/avx512_vnni.h"
#include "kernels/fp16.h"
#include "kernels/ggml_storage.h"
#include "kernels/kquant_dot.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {
namespace {

namespace hn = hwy::HWY_NAMESPACE;

float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return F16ToF32(h);
}

// A Q4_K super-block's 12 scale bytes (at offset 4) as its 8 6-bit scales
// (bytes 0-7 of the result) and 8 6-bit mins (bytes 8-15): ggml's
// get_scale_min_k4 for all eight at once, with its AVX2 kernel's masks.
inline void UnpackScalesQ4_K(const uint8_t* blk, uint32_t u[4]) {
  constexpr uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
  std::memcpy(u, blk + 4, 12);
  u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
  const uint32_t mins_lo = u[1] & k1;
  u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
  u[2] = mins_lo;
  u[0] &= k1;
}

// Rows ahead that the x86 kernels fetch into L2 as they go.
constexpr size_t kRowsAhead = 2;

// The cache lines of super-block i of the row at pf (null: none), into L2.
inline void Prefetch(const uint8_t* pf, size_t i, size_t block_bytes) {
  if (pf == nullptr) return;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(pf + i * block_bytes);
  for (uintptr_t p = begin & ~uintptr_t{63}; p < begin + block_bytes; p += 64) {
    __builtin_prefetch(reinterpret_cast<const void*>(p), 0, 2);
  }
}

#if defined(__clang__)
#define ST_KQUANT_UNROLL _Pragma("unroll")
#else
#define ST_KQUANT_UNROLL _Pragma("GCC unroll 8")
#endif

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
#if HWY_TARGET == HWY_AVX3_DL
ST_AVX512VNNI_BEGIN  // kernels/avx512_vnni.h
#endif

// Two consecutive activation blocks.
struct alignas(64) KPair {
  int8_t q[64];       // levels of both blocks
  float scale[16];    // d_x of the first block in lanes 0-7, second in 8-15
  int32_t off32[16];  // -32 * sum of each group of 4 levels (Q6_K offset)
};
struct Prepared {
  const KPair* pairs;
  const float* xsum;  // per block: d_x * sum of its levels (Q4_K mins)
};

inline __m256i Load256(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline __m512i Concat(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// u8 x s8 products, groups of 4 summed into int32 lanes and added to acc.
inline __m512i DotU8S8(__m512i acc, __m512i u, __m512i s) {
#if HWY_TARGET == HWY_AVX3_DL
  return _mm512_dpbusd_epi32(acc, u, s);
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
#endif
}

void PrepareVector(const BlockQ8_0* x, size_t n, KPair* pairs, float* xsum) {
  for (size_t p = 0; p < n / 64; ++p) {
    const BlockQ8_0& b0 = x[2 * p];
    const BlockQ8_0& b1 = x[2 * p + 1];
    const __m512i q = Concat(Load256(b0.qs), Load256(b1.qs));
    _mm512_store_si512(pairs[p].q, q);
    const float d0 = F16ToF32(b0.d), d1 = F16ToF32(b1.d);
    _mm512_store_ps(pairs[p].scale,
                    _mm512_insertf32x8(_mm512_set1_ps(d0), _mm256_set1_ps(d1), 1));
    const __m512i sum4 = DotU8S8(_mm512_setzero_si512(), _mm512_set1_epi8(1), q);
    _mm512_store_si512(pairs[p].off32, _mm512_slli_epi32(_mm512_sub_epi32(_mm512_setzero_si512(), sum4), 5));
    xsum[2 * p] = d0 * static_cast<float>(_mm512_mask_reduce_add_epi32(0x00FF, sum4));
    xsum[2 * p + 1] = d1 * static_cast<float>(_mm512_mask_reduce_add_epi32(0xFF00, sum4));
  }
}

template <size_t kVecs>
void RowQ4_K(const uint8_t* w, const Prepared* x, size_t n, float* out, const uint8_t* pf) {
  __m512 acc[kVecs];
  __m256 mins[kVecs];
  for (size_t k = 0; k < kVecs; ++k) {
    acc[k] = _mm512_setzero_ps();
    mins[k] = _mm256_setzero_ps();
  }
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  // Shift counts per 16-bit lane: 0 in the low half, 4 in the high half.
  const __m512i nibble_shift = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
  // Lanes 0-7 take scale 2c, lanes 8-15 scale 2c + 1.
  const __m512i pick[4] = {
      _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
      _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
      _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5),
      _mm512_setr_epi32(6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7)};
  for (size_t i = 0; i < n / 256; ++i, w += kQ4_KBlockBytes) {
    Prefetch(pf, i, kQ4_KBlockBytes);
    int32_t halves;
    std::memcpy(&halves, w, 4);
    const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128(halves));  // d, dmin
    uint32_t u[4];
    UnpackScalesQ4_K(w, u);
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u));
    const __m256 a = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)),
                                   _mm256_broadcastss_ps(dd));
    const __m256 b = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8))),
                                   _mm256_broadcastss_ps(_mm_movehdup_ps(dd)));
    for (size_t k = 0; k < kVecs; ++k) {
      mins[k] = _mm256_fmadd_ps(b, _mm256_loadu_ps(x[k].xsum + 8 * i), mins[k]);
    }
    const __m512 a16 = _mm512_castps256_ps512(a);
    ST_KQUANT_UNROLL
    for (int c = 0; c < 4; ++c) {
      // The 32 bytes in both halves, shifted by 0 (low nibbles: block 2c)
      // and 4 (high nibbles: block 2c + 1).
      const __m512i raw = _mm512_broadcast_i64x4(Load256(w + 16 + 32 * c));
      const __m512i u8 = _mm512_and_si512(_mm512_srlv_epi16(raw, nibble_shift), low4);
      const __m512 ac = _mm512_permutexvar_ps(pick[c], a16);
      ST_KQUANT_UNROLL
      for (size_t k = 0; k < kVecs; ++k) {
        const KPair& p = x[k].pairs[4 * i + c];
        const __m512i sum = DotU8S8(_mm512_setzero_si512(), u8, _mm512_load_si512(p.q));
        acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(ac, _mm512_load_ps(p.scale)),
                                 acc[k]);
      }
    }
  }
  for (size_t k = 0; k < kVecs; ++k) {
    const __m128 m4 = _mm_add_ps(_mm256_castps256_ps128(mins[k]), _mm256_extractf128_ps(mins[k], 1));
    const __m128 m2 = _mm_add_ps(m4, _mm_movehl_ps(m4, m4));
    const float m = _mm_cvtss_f32(_mm_add_ss(m2, _mm_movehdup_ps(m2)));
    out[k] = _mm512_reduce_add_ps(acc[k]) - m;
  }
}

template <size_t kVecs>
void RowQ6_K(const uint8_t* w, const Prepared* x, size_t n, float* out, const uint8_t* pf) {
  __m512 acc[kVecs];
  for (size_t k = 0; k < kVecs; ++k) acc[k] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F), two = _mm512_set1_epi8(3);
  // Scale bytes 0-3 each to 4 lanes.
  const __m128i spread = _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (size_t i = 0; i < n / 256; ++i, w += kQ6_KBlockBytes) {
    Prefetch(pf, i, kQ6_KBlockBytes);
    uint16_t dh;
    std::memcpy(&dh, w + 208, 2);
    const float d = _cvtsh_ss(dh);
    ST_KQUANT_UNROLL
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = _mm512_loadu_si512(w + 64 * h);
      const __m256i qh = Load256(w + 128 + 32 * h);
      const uint8_t* sc = w + 192 + 8 * h;
      // Blocks 0 and 1 of this half, then 2 and 3 (ggml's q1, q2 | q3, q4).
      const __m512i hi01 = Concat(qh, _mm256_srli_epi16(qh, 2));
      const __m512i hi23 = Concat(_mm256_srli_epi16(qh, 4), _mm256_srli_epi16(qh, 6));
      const __m512i u01 = _mm512_or_si512(_mm512_and_si512(ql, low4),
                                          _mm512_slli_epi16(_mm512_and_si512(hi01, two), 4));
      const __m512i u23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                                          _mm512_slli_epi16(_mm512_and_si512(hi23, two), 4));
      ST_KQUANT_UNROLL
      for (int pair = 0; pair < 2; ++pair) {
        int32_t four;
        std::memcpy(&four, sc + 4 * pair, 4);
        const __m512 scale = _mm512_mul_ps(
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_shuffle_epi8(_mm_cvtsi32_si128(four), spread))),
            _mm512_set1_ps(d));
        const __m512i u = pair == 0 ? u01 : u23;
        ST_KQUANT_UNROLL
        for (size_t k = 0; k < kVecs; ++k) {
          const KPair& p = x[k].pairs[4 * i + 2 * h + pair];
          const __m512i sum = DotU8S8(_mm512_load_si512(p.off32), u, _mm512_load_si512(p.q));
          acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum),
                                   _mm512_mul_ps(scale, _mm512_load_ps(p.scale)), acc[k]);
        }
      }
    }
  }
  for (size_t k = 0; k < kVecs; ++k) out[k] = _mm512_reduce_add_ps(acc[k]);
}

template <size_t kVecs>
void RowVecs(uint32_t type, const uint8_t* w, const Prepared* x, size_t n, float* out,
             const uint8_t* pf) {
  if (type == kGgmlQ4_K) {
    RowQ4_K<kVecs>(w, x, n, out, pf);
  } else {
    RowQ6_K<kVecs>(w, x, n, out, pf);
  }
}

void RowsT(uint32_t type, const void* w, size_t row_bytes, const uint32_t* rows, size_t n_rows,
           const BlockQ8_0* const* xs, size_t n_vecs, size_t n, float* y, size_t y_stride) {
  constexpr size_t kMaxVecs = 4;
  thread_local std::vector<KPair> pairs;
  thread_local std::vector<float> sums;
  thread_local std::vector<Prepared> prepared;
  const size_t n_pairs = n / 64, n_blocks = n / 32;
  if (pairs.size() < n_vecs * n_pairs) pairs.resize(n_vecs * n_pairs);
  if (sums.size() < n_vecs * n_blocks) sums.resize(n_vecs * n_blocks);
  prepared.resize(n_vecs);
  for (size_t v = 0; v < n_vecs; ++v) {
    PrepareVector(xs[v], n, pairs.data() + v * n_pairs, sums.data() + v * n_blocks);
    prepared[v] = {pairs.data() + v * n_pairs, sums.data() + v * n_blocks};
  }
  const auto* base = static_cast<const uint8_t*>(w);
  for (size_t k = 0; k < n_rows; ++k) {
    const size_t r = rows != nullptr ? rows[k] : k;
    const uint8_t* row = base + r * row_bytes;
    // The row kRowsAhead on, fetched into L2 a few lines per super-block:
    // the hardware prefetcher alone left the arithmetic and the DRAM reads
    // one after the other (from DRAM a row took the time of both).
    const size_t ahead = k + kRowsAhead;
    const uint8_t* pf =
        ahead < n_rows ? base + (rows != nullptr ? rows[ahead] : ahead) * row_bytes : nullptr;
    for (size_t v = 0; v < n_vecs; v += kMaxVecs) {
      const size_t count = std::min(kMaxVecs, n_vecs - v);
      float out[kMaxVecs];
      const Prepared* px = prepared.data() + v;
      switch (count) {
        case 4: RowVecs<4>(type, row, px, n, out, v == 0 ? pf : nullptr); break;
        case 3: RowVecs<3>(type, row, px, n, out, v == 0 ? pf : nullptr); break;
        case 2: RowVecs<2>(type, row, px, n, out, v == 0 ? pf : nullptr); break;
        default: RowVecs<1>(type, row, px, n, out, v == 0 ? pf : nullptr); break;
      }
      for (size_t j = 0; j < count; ++j) y[(v + j) * y_stride + r] = out[j];
    }
  }
}

#if HWY_TARGET == HWY_AVX3_DL
ST_AVX512VNNI_END
#endif

#elif HWY_TARGET == HWY_AVX2
// AVX2, ggml's method: maddubs (u8 levels x s8 activations, pairs into
// int16; Q4_K pairs <= 2 * 15 * 127, Q6_K <= 2 * 63 * 127) and madd into
// 8 int32 lanes per 32-weight block. Q4_K's mins as on AVX-512 (d_x *
// sum(x) per block, once per vector); Q6_K's -32 offset subtracted in
// int16 (maddubs of 32 with x), its two sub-block scales madd'ed in.

struct Prepared {
  const BlockQ8_0* x;
  const float* xsum;  // per block: d_x * sum of its levels (Q4_K mins)
};

inline __m256i Load256(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

inline float Sum8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

void PrepareSums(const BlockQ8_0* x, size_t n, float* xsum) {
  const __m256i ones = _mm256_set1_epi8(1);
  for (size_t b = 0; b < n / 32; ++b) {
    const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones, Load256(x[b].qs)),
                                        _mm256_set1_epi16(1));
    const __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    const __m128i u = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
    const int32_t sum = _mm_cvtsi128_si32(_mm_add_epi32(u, _mm_shuffle_epi32(u, 0xB1)));
    xsum[b] = _cvtsh_ss(x[b].d) * static_cast<float>(sum);
  }
}

template <size_t kVecs>
void RowQ4_K(const uint8_t* w, const Prepared* x, size_t n, float* out, const uint8_t* pf) {
  __m256 acc[kVecs], mins[kVecs];
  for (size_t k = 0; k < kVecs; ++k) acc[k] = mins[k] = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  for (size_t i = 0; i < n / 256; ++i, w += kQ4_KBlockBytes) {
    Prefetch(pf, i, kQ4_KBlockBytes);
    int32_t halves;
    std::memcpy(&halves, w, 4);
    const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128(halves));  // d, dmin
    uint32_t u[4];
    UnpackScalesQ4_K(w, u);
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u));
    alignas(32) float a[8];
    _mm256_store_ps(a, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)),
                                     _mm256_broadcastss_ps(dd)));
    const __m256 b = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8))),
                                   _mm256_broadcastss_ps(_mm_movehdup_ps(dd)));
    for (size_t k = 0; k < kVecs; ++k) {
      mins[k] = _mm256_fmadd_ps(b, _mm256_loadu_ps(x[k].xsum + 8 * i), mins[k]);
    }
    for (int c = 0; c < 4; ++c) {
      const __m256i raw = Load256(w + 16 + 32 * c);
      const __m256i lo = _mm256_and_si256(raw, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
      for (size_t k = 0; k < kVecs; ++k) {
        const BlockQ8_0& x0 = x[k].x[8 * i + 2 * c];
        const BlockQ8_0& x1 = x[k].x[8 * i + 2 * c + 1];
        const __m256i s0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, Load256(x0.qs)), ones);
        const __m256i s1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, Load256(x1.qs)), ones);
        acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(a[2 * c] * _cvtsh_ss(x0.d)), acc[k]);
        acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(a[2 * c + 1] * _cvtsh_ss(x1.d)), acc[k]);
      }
    }
  }
  for (size_t k = 0; k < kVecs; ++k) out[k] = Sum8(acc[k]) - Sum8(mins[k]);
}

template <size_t kVecs>
void RowQ6_K(const uint8_t* w, const Prepared* x, size_t n, float* out, const uint8_t* pf) {
  __m256 acc[kVecs];
  for (size_t k = 0; k < kVecs; ++k) acc[k] = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(3),
                offset = _mm256_set1_epi8(32);
  for (size_t i = 0; i < n / 256; ++i, w += kQ6_KBlockBytes) {
    Prefetch(pf, i, kQ6_KBlockBytes);
    uint16_t dh;
    std::memcpy(&dh, w + 208, 2);
    const float d = _cvtsh_ss(dh);
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = Load256(w + 64 * h), ql1 = Load256(w + 64 * h + 32);
      const __m256i qh = Load256(w + 128 + 32 * h);
      const int8_t* sc = reinterpret_cast<const int8_t*>(w + 192) + 8 * h;
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(ql0, low4),
                             _mm256_slli_epi16(_mm256_and_si256(qh, two), 4));
      q[1] = _mm256_or_si256(_mm256_and_si256(ql1, low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), two), 4));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), two), 4));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), two), 4));
      for (int g = 0; g < 4; ++g) {
        const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(sc[2 * g + 1]), _mm_set1_epi16(sc[2 * g]));
        for (size_t k = 0; k < kVecs; ++k) {
          const BlockQ8_0& xb = x[k].x[8 * i + 4 * h + g];
          const __m256i xq = Load256(xb.qs);
          const __m256i pairs = _mm256_sub_epi16(_mm256_maddubs_epi16(q[g], xq),
                                                 _mm256_maddubs_epi16(offset, xq));
          const __m256i sum = _mm256_madd_epi16(pairs, scales);
          acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(d * _cvtsh_ss(xb.d)), acc[k]);
        }
      }
    }
  }
  for (size_t k = 0; k < kVecs; ++k) out[k] = Sum8(acc[k]);
}

template <size_t kVecs>
void RowVecs(uint32_t type, const uint8_t* w, const Prepared* x, size_t n, float* out,
             const uint8_t* pf) {
  if (type == kGgmlQ4_K) {
    RowQ4_K<kVecs>(w, x, n, out, pf);
  } else {
    RowQ6_K<kVecs>(w, x, n, out, pf);
  }
}

void RowsT(uint32_t type, const void* w, size_t row_bytes, const uint32_t* rows, size_t n_rows,
           const BlockQ8_0* const* xs, size_t n_vecs, size_t n, float* y, size_t y_stride) {
  constexpr size_t kMaxVecs = 4;
  thread_local std::vector<float> sums;
  thread_local std::vector<Prepared> prepared;
  const size_t n_blocks = n / 32;
  if (sums.size() < n_vecs * n_blocks) sums.resize(n_vecs * n_blocks);
  prepared.resize(n_vecs);
  for (size_t v = 0; v < n_vecs; ++v) {
    if (type == kGgmlQ4_K) PrepareSums(xs[v], n, sums.data() + v * n_blocks);
    prepared[v] = {xs[v], sums.data() + v * n_blocks};
  }
  const auto* base = static_cast<const uint8_t*>(w);
  for (size_t k = 0; k < n_rows; ++k) {
    const size_t r = rows != nullptr ? rows[k] : k;
    const uint8_t* row = base + r * row_bytes;
    // The row kRowsAhead on, fetched into L2 a few lines per super-block:
    // the hardware prefetcher alone left the arithmetic and the DRAM reads
    // one after the other (from DRAM a row took the time of both).
    const size_t ahead = k + kRowsAhead;
    const uint8_t* pf =
        ahead < n_rows ? base + (rows != nullptr ? rows[ahead] : ahead) * row_bytes : nullptr;
    for (size_t v = 0; v < n_vecs; v += kMaxVecs) {
      const size_t count = std::min(kMaxVecs, n_vecs - v);
      float out[kMaxVecs];
      const Prepared* px = prepared.data() + v;
      switch (count) {
        case 4: RowVecs<4>(type, row, px, n, out, v == 0 ? pf : nullptr); break;
        case 3: RowVecs<3>(type, row, px, n, out, v == 0 ? pf : nullptr); break;
        case 2: RowVecs<2>(type, row, px, n, out, v == 0 ? pf : nullptr); break;
        default: RowVecs<1>(type, row, px, n, out, v == 0 ? pf : nullptr); break;
      }
      for (size_t j = 0; j < count; ++j) y[(v + j) * y_stride + r] = out[j];
    }
  }
}

#else  // generic Highway code (SSE4, NEON, ...): one vector at a time

using D16 = hn::CappedTag<int16_t, 16>;  // lanes divide a 16-weight sub-block
using D32 = hn::RepartitionToWide<D16>;
using DF32 = hn::Rebind<float, D32>;

float RowQ4_K(const uint8_t* w, const BlockQ8_0* x, size_t n) {
  const D16 d16;
  const hn::RebindToUnsigned<D16> du16;
  const hn::Rebind<int8_t, D16> d8;
  const hn::Rebind<uint8_t, D16> du8;
  const D32 d32;
  const DF32 df;
  const size_t N = hn::Lanes(d16);
  const auto mask = hn::Set(du16, 0x0F);
  const auto one = hn::Set(d16, 1);
  auto acc = hn::Zero(df);
  for (size_t i = 0; i < n / 256; ++i, w += kQ4_KBlockBytes) {
    const float d = Half(w), dmin = Half(w + 2);
    uint32_t u[4];
    UnpackScalesQ4_K(w, u);
    uint8_t sm[16];  // scales, then mins
    std::memcpy(sm, u, 16);
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = w + 16 + 32 * c;
      const BlockQ8_0& x0 = x[8 * i + 2 * c];
      const BlockQ8_0& x1 = x[8 * i + 2 * c + 1];
      auto a0 = hn::Zero(d32), a0b = hn::Zero(d32), a1 = hn::Zero(d32), a1b = hn::Zero(d32);
      auto s0 = hn::Zero(d32), s0b = hn::Zero(d32), s1 = hn::Zero(d32), s1b = hn::Zero(d32);
      for (size_t j = 0; j < 32; j += N) {
        const auto packed = hn::PromoteTo(du16, hn::LoadU(du8, q + j));
        const auto lo = hn::BitCast(d16, hn::And(packed, mask));
        const auto hi = hn::BitCast(d16, hn::ShiftRight<4>(packed));
        const auto xl = hn::PromoteTo(d16, hn::LoadU(d8, x0.qs + j));
        const auto xh = hn::PromoteTo(d16, hn::LoadU(d8, x1.qs + j));
        a0 = hn::ReorderWidenMulAccumulate(d32, lo, xl, a0, a0b);
        a1 = hn::ReorderWidenMulAccumulate(d32, hi, xh, a1, a1b);
        s0 = hn::ReorderWidenMulAccumulate(d32, one, xl, s0, s0b);
        s1 = hn::ReorderWidenMulAccumulate(d32, one, xh, s1, s1b);
      }
      const float dx0 = F16ToF32(x0.d), dx1 = F16ToF32(x1.d);
      const float a0s = d * sm[2 * c], a1s = d * sm[2 * c + 1];
      const float b0s = dmin * sm[8 + 2 * c], b1s = dmin * sm[8 + 2 * c + 1];
      acc = hn::MulAdd(hn::ConvertTo(df, hn::Add(a0, a0b)), hn::Set(df, a0s * dx0), acc);
      acc = hn::MulAdd(hn::ConvertTo(df, hn::Add(s0, s0b)), hn::Set(df, -b0s * dx0), acc);
      acc = hn::MulAdd(hn::ConvertTo(df, hn::Add(a1, a1b)), hn::Set(df, a1s * dx1), acc);
      acc = hn::MulAdd(hn::ConvertTo(df, hn::Add(s1, s1b)), hn::Set(df, -b1s * dx1), acc);
    }
  }
  return hn::GetLane(hn::SumOfLanes(df, acc));
}

float RowQ6_K(const uint8_t* w, const BlockQ8_0* x, size_t n) {
  const D16 d16;
  const hn::RebindToUnsigned<D16> du16;
  const hn::Rebind<int8_t, D16> d8;
  const hn::Rebind<uint8_t, D16> du8;
  const D32 d32;
  const DF32 df;
  const size_t N = hn::Lanes(d16);
  const auto mask4 = hn::Set(du16, 0x0F), mask2 = hn::Set(du16, 3);
  const auto offset = hn::Set(d16, 32);
  auto acc = hn::Zero(df);
  for (size_t i = 0; i < n / 256; ++i, w += kQ6_KBlockBytes) {
    const float d = Half(w + 208);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = w + 64 * h;
      const uint8_t* qh = w + 128 + 32 * h;
      const int8_t* sc = reinterpret_cast<const int8_t*>(w + 192) + 8 * h;
      for (int g = 0; g < 4; ++g) {
        const BlockQ8_0& xb = x[8 * i + 4 * h + g];
        const float dx = F16ToF32(xb.d) * d;
        const uint8_t* lo_bytes = g % 2 == 0 ? ql : ql + 32;
        for (size_t half = 0; half < 2; ++half) {
          auto a = hn::Zero(d32), ab = hn::Zero(d32);
          for (size_t j = 16 * half; j < 16 * half + 16; j += N) {
            const auto lv = hn::PromoteTo(du16, hn::LoadU(du8, lo_bytes + j));
            const auto lo = g < 2 ? hn::And(lv, mask4) : hn::ShiftRight<4>(lv);
            const auto hv = hn::PromoteTo(du16, hn::LoadU(du8, qh + j));
            const auto hi = hn::And(hn::ShiftRightSame(hv, 2 * g), mask2);
            const auto q = hn::Sub(hn::BitCast(d16, hn::Or(lo, hn::ShiftLeft<4>(hi))), offset);
            const auto xv = hn::PromoteTo(d16, hn::LoadU(d8, xb.qs + j));
            a = hn::ReorderWidenMulAccumulate(d32, q, xv, a, ab);
          }
          acc = hn::MulAdd(hn::ConvertTo(df, hn::Add(a, ab)),
                           hn::Set(df, dx * static_cast<float>(sc[2 * g + half])), acc);
        }
      }
    }
  }
  return hn::GetLane(hn::SumOfLanes(df, acc));
}

void RowsT(uint32_t type, const void* w, size_t row_bytes, const uint32_t* rows, size_t n_rows,
           const BlockQ8_0* const* xs, size_t n_vecs, size_t n, float* y, size_t y_stride) {
  const auto* base = static_cast<const uint8_t*>(w);
  for (size_t k = 0; k < n_rows; ++k) {
    const size_t r = rows != nullptr ? rows[k] : k;
    const uint8_t* row = base + r * row_bytes;
    for (size_t v = 0; v < n_vecs; ++v) {
      y[v * y_stride + r] = type == kGgmlQ4_K ? RowQ4_K(row, xs[v], n) : RowQ6_K(row, xs[v], n);
    }
  }
}

#endif  // AVX3, AVX3_DL / AVX2 / generic

}  // namespace

void DotRowsKQuantT(uint32_t type, const void* w, size_t row_bytes, const uint32_t* rows,
                    size_t n_rows, const BlockQ8_0* const* xs, size_t n_vecs, size_t n, float* y,
                    size_t y_stride) {
  RowsT(type, w, row_bytes, rows, n_rows, xs, n_vecs, n, y, y_stride);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(DotRowsKQuantT);

bool KQuantDotSupported(uint32_t ggml_type) {
  return ggml_type == kGgmlQ4_K || ggml_type == kGgmlQ6_K;
}

void DotRowsKQuant(uint32_t ggml_type, const void* w, size_t row_bytes, const uint32_t* rows,
                   size_t n_rows, const BlockQ8_0* const* xs, size_t n_vecs, size_t n, float* y,
                   size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(DotRowsKQuantT)(ggml_type, w, row_bytes, rows, n_rows, xs, n_vecs, n, y,
                                       y_stride);
}

}  // namespace st
#endif  // HWY_ONCE
