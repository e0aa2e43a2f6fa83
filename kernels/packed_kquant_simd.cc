// st::PackedKQuantMatMulGroups and st::CanPackKQuant: the 16-row packed
// Q4_K / Q6_K kernels (layouts and numerics in packed_kquant.h), with
// run-time dispatch.
//
//  AVX3_DL (AVX-512 VNNI) and AVX3 (maddubs + madd): Q4_K: per super-block
//      the 16 rows' 6-bit scales and mins unpacked at once (ggml's
//      get_scale_min_k4 on 16 lanes) and scaled by d and dmin; per pair of
//      sub-blocks eight 64-byte chunks, each split into low nibbles (the
//      first sub-block) and high nibbles (the second); per vector and
//      sub-block eight dpbusd against activation dwords broadcast from its
//      Q8_0 block, one convert, and two FMAs (levels, then mins). Q6_K: per
//      sub-block eight ql and eight qh chunks make the 6-bit levels (a
//      nibble or'ed with two bits moved to bits 4-5); per vector two chains
//      of four dpbusd (one per 16-weight scale) started from -32 times that
//      half's activation level sum, two converts and two FMAs.
//  AVX2 (packed_kquant_avx2-inl.h): the same with each 64-byte chunk as two
//      8-row halves, maddubs into int16 sums widened once per sub-block
//      (Q4_K) or per two chunks (Q6_K) by a madd against ones.
//  Other targets: CanPackKQuant is false (the row kernels are used).
// Up to 8 vectors share each super-block's unpacked scales and weights.
// Integer sums are exact, so every target equals the scalar twin bit for bit.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/packed_kquant_simd.cc"
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/avx512_vnni.h"
#include "kernels/ggml_storage.h"
#include "kernels/matmul.h"
#include "kernels/packed_kquant.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {
namespace {

#if defined(__clang__)
#define ST_PACKED_KQ_UNROLL _Pragma("unroll")
#else
#define ST_PACKED_KQ_UNROLL _Pragma("GCC unroll 8")
#endif

constexpr size_t kMaxVecs = 8;
constexpr size_t kQ4_KSuperBytes = kPackedKQuantRows * kQ4_KBlockBytes;  // 2304
constexpr size_t kQ6_KSuperBytes = kPackedKQuantRows * kQ6_KBlockBytes;  // 3360
// Software prefetch, as the Q4_0 packed kernel does: per step through a
// super-block (a quarter of a Q4_K one, an eighth of a Q6_K one) the lines
// of as many bytes, kPrefetchBytes ahead into L1 and kPrefetchBytesFar ahead
// into L2, so every line of a group is fetched ahead once whatever order a
// super-block is read in. Until session 39 the lines of the levels read next
// were fetched (Q4_K's scales and half of Q6_K's low bits never were), and
// from DRAM the kernels ran at a fraction of their speed in cache:
// BM_DotRows, one thread, 768 x 1536, medians of 5, Zen 4 (~26 GB/s read
// on one core), AVX-512, 1 vector: Q4_K 14.4 -> 16.5-18.1 GB/s, Q6_K 9.5
// -> 15.8-16.6; 4 vectors: Q4_K -> 14.3-14.9, Q6_K -> 15.9-17.7
// (/work/notes/s39/avx512_packed_ref.log, pf_ab.log; pf_sweep*.log: no
// prefetch, L1 only and
// other distances were no better; a fixed count of unaligned prefetches
// per step, unrolled, was slower: 10.1-14.8). docs/DESIGN.md has more.
constexpr size_t kPrefetchBytes = 4096;
constexpr size_t kPrefetchBytesFar = 12288;

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL || HWY_TARGET == HWY_AVX2
// The lines of [p, p + kBytes), kPrefetchBytes ahead into L1 and
// kPrefetchBytesFar ahead into L2 (a prefetch does not fault).
template <size_t kBytes>
HWY_INLINE void PrefetchSpan(const uint8_t* p) {
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + kBytes;
  for (uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{63}; a < end; a += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(a + kPrefetchBytes), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(a + kPrefetchBytesFar), _MM_HINT_T1);
  }
}
#endif

// One activation vector as the kernel reads it.
struct XRef {
  const BlockQ8_0* q8;
  const float* scale;
  const int32_t* sum;       // per 32-weight block (Q4_K's mins)
  const int32_t* half_sum;  // per 16 weights (Q6_K's -32 offset)
};

inline int32_t LoadDword(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
#if HWY_TARGET == HWY_AVX3_DL
ST_AVX512VNNI_BEGIN
#endif

constexpr bool kAvailable = true;

// acc += sum over 4-byte groups of u8(w) * s8(x), exact for our ranges.
inline __m512i DotU8S8(__m512i acc, __m512i w, __m512i x) {
#if HWY_TARGET == HWY_AVX3_DL
  return _mm512_dpbusd_epi32(acc, w, x);
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(w, x), _mm512_set1_epi16(1)));
#endif
}

template <size_t kVecs>
void GroupQ4_K(const uint8_t* group, size_t nsb, const XRef* xs, float* y, size_t y_stride) {
  // Independent integer chains per vector and sub-block: dpbusd accumulates
  // in place, so one chain of 8 would be latency-bound with few vectors.
  constexpr size_t kChains = kVecs <= 2 ? 4 : (kVecs <= 4 ? 2 : 1);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i k1 = _mm512_set1_epi32(0x3f3f3f3f), k2 = _mm512_set1_epi32(0x0f0f0f0f),
                k3 = _mm512_set1_epi32(0x03030303), byte = _mm512_set1_epi32(0xFF);
  __m512 acc[kVecs];
  ST_PACKED_KQ_UNROLL
  for (size_t v = 0; v < kVecs; ++v) acc[v] = _mm512_setzero_ps();
  for (size_t i = 0; i < nsb; ++i) {
    const uint8_t* sb = group + i * kQ4_KSuperBytes;
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb)));
    const __m512 dmin =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb + 32)));
    // get_scale_min_k4 for 16 rows: sc[0] scales 0-3, sc[1] scales 4-7,
    // mn[0] mins 0-3, mn[1] mins 4-7 (a byte each, per lane).
    const __m512i u0 = _mm512_loadu_si512(sb + 64);
    const __m512i u1 = _mm512_loadu_si512(sb + 128);
    const __m512i u2 = _mm512_loadu_si512(sb + 192);
    const __m512i sc[2] = {
        _mm512_and_si512(u0, k1),
        _mm512_or_si512(_mm512_and_si512(u2, k2),
                        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), k3), 4))};
    const __m512i mn[2] = {
        _mm512_and_si512(u1, k1),
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), k2),
                        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), k3), 4))};
    ST_PACKED_KQ_UNROLL
    for (size_t c = 0; c < 4; ++c) {
      const uint8_t* chunks = sb + kPackedQ4_KLevels + 512 * c;
      PrefetchSpan<kQ4_KSuperBytes / 4>(sb + kQ4_KSuperBytes / 4 * c);
      ST_PACKED_KQ_UNROLL
      for (size_t half = 0; half < 2; ++half) {
        const size_t j = 2 * c + half;  // sub-block
        const int shift = static_cast<int>(8 * (j % 4));
        const __m512 scale = _mm512_mul_ps(
            d, _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(sc[j / 4], shift), byte)));
        const __m512 minv = _mm512_mul_ps(
            dmin, _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(mn[j / 4], shift), byte)));
        __m512i w[8];
        ST_PACKED_KQ_UNROLL
        for (size_t t = 0; t < 8; ++t) {
          const __m512i raw = _mm512_loadu_si512(chunks + 64 * t);
          w[t] = half == 0 ? _mm512_and_si512(raw, low4)
                           : _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
        }
        const size_t b = 8 * i + j;
        __m512i s[kVecs][kChains];
        ST_PACKED_KQ_UNROLL
        for (size_t v = 0; v < kVecs; ++v) {
          ST_PACKED_KQ_UNROLL
          for (size_t k = 0; k < kChains; ++k) s[v][k] = _mm512_setzero_si512();
        }
        // Registers outer, vectors inner: the vectors' dpbusd are
        // independent and issue back to back.
        ST_PACKED_KQ_UNROLL
        for (size_t t = 0; t < 8; ++t) {
          ST_PACKED_KQ_UNROLL
          for (size_t v = 0; v < kVecs; ++v) {
            const __m512i xv = _mm512_set1_epi32(LoadDword(xs[v].q8[b].qs + 4 * t));
            s[v][t % kChains] = DotU8S8(s[v][t % kChains], w[t], xv);
          }
        }
        ST_PACKED_KQ_UNROLL
        for (size_t v = 0; v < kVecs; ++v) {
          __m512i sum = s[v][0];
          if constexpr (kChains == 4) {
            sum = _mm512_add_epi32(_mm512_add_epi32(s[v][0], s[v][1]),
                                   _mm512_add_epi32(s[v][2], s[v][3]));
          } else if constexpr (kChains == 2) {
            sum = _mm512_add_epi32(s[v][0], s[v][1]);
          }
          const float dx = xs[v].scale[b];
          acc[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum),
                                   _mm512_mul_ps(scale, _mm512_set1_ps(dx)), acc[v]);
          const float xsum = dx * static_cast<float>(xs[v].sum[b]);
          acc[v] = _mm512_fmadd_ps(minv, _mm512_set1_ps(-xsum), acc[v]);
        }
      }
    }
  }
  ST_PACKED_KQ_UNROLL
  for (size_t v = 0; v < kVecs; ++v) _mm512_storeu_ps(y + v * y_stride, acc[v]);
}

template <size_t kVecs>
void GroupQ6_K(const uint8_t* group, size_t nsb, const XRef* xs, float* y, size_t y_stride) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
  __m512 acc[kVecs];
  ST_PACKED_KQ_UNROLL
  for (size_t v = 0; v < kVecs; ++v) acc[v] = _mm512_setzero_ps();
  for (size_t i = 0; i < nsb; ++i) {
    const uint8_t* sb = group + i * kQ6_KSuperBytes;
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb)));
    ST_PACKED_KQ_UNROLL
    for (size_t s = 0; s < 8; ++s) {  // sub-block: half h, quarter g
      const size_t h = s / 4, g = s % 4, b = 8 * i + s;
      const uint8_t* ql = sb + kPackedQ6_KLow + 64 * (16 * h + 8 * (g % 2));
      const uint8_t* qh = sb + kPackedQ6_KHigh + 64 * 8 * h;
      PrefetchSpan<kQ6_KSuperBytes / 8>(sb + kQ6_KSuperBytes / 8 * s);
      __m512i w[8];
      ST_PACKED_KQ_UNROLL
      for (size_t t = 0; t < 8; ++t) {
        __m512i lo = _mm512_loadu_si512(ql + 64 * t);
        if (g >= 2) lo = _mm512_srli_epi16(lo, 4);
        __m512i hi = _mm512_loadu_si512(qh + 64 * t);
        // Bits 2g, 2g + 1 of each byte to bits 4, 5 (16-bit shifts: the
        // mask drops what crosses from the neighbouring byte).
        if (g == 0) hi = _mm512_slli_epi16(hi, 4);
        if (g == 1) hi = _mm512_slli_epi16(hi, 2);
        if (g == 3) hi = _mm512_srli_epi16(hi, 2);
        w[t] = _mm512_or_si512(_mm512_and_si512(lo, low4), _mm512_and_si512(hi, bits45));
      }
      const __m512 scale[2] = {
          _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                               _mm_loadu_si128(reinterpret_cast<const __m128i*>(
                                   sb + kPackedQ6_KScales + 16 * (8 * h + 2 * g)))))),
          _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                               _mm_loadu_si128(reinterpret_cast<const __m128i*>(
                                   sb + kPackedQ6_KScales + 16 * (8 * h + 2 * g + 1))))))};
      __m512i sum[kVecs][2];
      ST_PACKED_KQ_UNROLL
      for (size_t v = 0; v < kVecs; ++v) {
        sum[v][0] = _mm512_set1_epi32(-32 * xs[v].half_sum[2 * b]);
        sum[v][1] = _mm512_set1_epi32(-32 * xs[v].half_sum[2 * b + 1]);
      }
      ST_PACKED_KQ_UNROLL
      for (size_t t = 0; t < 8; ++t) {
        ST_PACKED_KQ_UNROLL
        for (size_t v = 0; v < kVecs; ++v) {
          const __m512i xv = _mm512_set1_epi32(LoadDword(xs[v].q8[b].qs + 4 * t));
          sum[v][t / 4] = DotU8S8(sum[v][t / 4], w[t], xv);
        }
      }
      ST_PACKED_KQ_UNROLL
      for (size_t v = 0; v < kVecs; ++v) {
        const __m512 dx = _mm512_set1_ps(xs[v].scale[b]);
        ST_PACKED_KQ_UNROLL
        for (size_t k = 0; k < 2; ++k) {
          acc[v] =
              _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[v][k]), _mm512_mul_ps(scale[k], dx), acc[v]);
        }
      }
    }
  }
  ST_PACKED_KQ_UNROLL
  for (size_t v = 0; v < kVecs; ++v) _mm512_storeu_ps(y + v * y_stride, acc[v]);
}

#if HWY_TARGET == HWY_AVX3_DL
ST_AVX512VNNI_END
#endif

#elif HWY_TARGET == HWY_AVX2

#include "kernels/packed_kquant_avx2-inl.h"

#else

constexpr bool kAvailable = false;

template <size_t kVecs>
void GroupQ4_K(const uint8_t*, size_t, const XRef*, float*, size_t) {}
template <size_t kVecs>
void GroupQ6_K(const uint8_t*, size_t, const XRef*, float*, size_t) {}

#endif

template <size_t kVecs>
void Group(uint32_t ggml_type, const uint8_t* group, size_t nsb, const XRef* xs, float* y,
           size_t y_stride) {
  if (ggml_type == kGgmlQ4_K) {
    GroupQ4_K<kVecs>(group, nsb, xs, y, y_stride);
  } else {
    GroupQ6_K<kVecs>(group, nsb, xs, y, y_stride);
  }
}

}  // namespace

bool PackedKQuantAvailableT() { return kAvailable; }

void PackedKQuantMatMulGroupsT(uint32_t ggml_type, const void* packed, size_t cols,
                               const Activations& x, size_t v_begin, size_t v_end, size_t g_begin,
                               size_t g_end, float* y, size_t y_stride) {
  if (!kAvailable) {
    scalar::PackedKQuantMatMulGroups(ggml_type, packed, cols, x, v_begin, v_end, g_begin, g_end, y,
                                     y_stride);
    return;
  }
  const size_t nsb = cols / 256;
  const size_t super_bytes = ggml_type == kGgmlQ4_K ? kQ4_KSuperBytes : kQ6_KSuperBytes;
  // Q6_K: the activations' level sums per 16 weights, once per call.
  thread_local std::vector<int32_t> half_sums;
  if (ggml_type == kGgmlQ6_K) {
    half_sums.resize((v_end - v_begin) * (cols / 16));
    for (size_t v = v_begin; v < v_end; ++v) {
      const BlockQ8_0* q = x.q8(v);
      int32_t* hs = half_sums.data() + (v - v_begin) * (cols / 16);
      for (size_t b = 0; b < cols / 32; ++b) {
        for (size_t k = 0; k < 2; ++k) {
          int32_t sum = 0;
          for (size_t l = 16 * k; l < 16 * k + 16; ++l) sum += q[b].qs[l];
          hs[2 * b + k] = sum;
        }
      }
    }
  }
  XRef xs[kMaxVecs];
  for (size_t g = g_begin; g < g_end; ++g) {
    const uint8_t* group = static_cast<const uint8_t*>(packed) + g * nsb * super_bytes;
    for (size_t v0 = v_begin; v0 < v_end; v0 += kMaxVecs) {
      const size_t count = std::min(kMaxVecs, v_end - v0);
      for (size_t k = 0; k < count; ++k) {
        xs[k] = {
            x.q8(v0 + k), x.q8_scales(v0 + k), x.q8_sums(v0 + k),
            ggml_type == kGgmlQ6_K ? half_sums.data() + (v0 + k - v_begin) * (cols / 16) : nullptr};
      }
      float* out = y + (v0 - v_begin) * y_stride + g * kPackedKQuantRows;
      switch (count) {
        case 8:
          Group<8>(ggml_type, group, nsb, xs, out, y_stride);
          break;
        case 7:
          Group<7>(ggml_type, group, nsb, xs, out, y_stride);
          break;
        case 6:
          Group<6>(ggml_type, group, nsb, xs, out, y_stride);
          break;
        case 5:
          Group<5>(ggml_type, group, nsb, xs, out, y_stride);
          break;
        case 4:
          Group<4>(ggml_type, group, nsb, xs, out, y_stride);
          break;
        case 3:
          Group<3>(ggml_type, group, nsb, xs, out, y_stride);
          break;
        case 2:
          Group<2>(ggml_type, group, nsb, xs, out, y_stride);
          break;
        default:
          Group<1>(ggml_type, group, nsb, xs, out, y_stride);
          break;
      }
    }
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(PackedKQuantAvailableT);
HWY_EXPORT(PackedKQuantMatMulGroupsT);

bool PackableKQuantShape(uint32_t ggml_type, size_t rows, size_t cols) {
  return (ggml_type == kGgmlQ4_K || ggml_type == kGgmlQ6_K) && rows > 0 &&
         rows % kPackedKQuantRows == 0 && cols > 0 && cols % 256 == 0;
}

bool CanPackKQuant(uint32_t ggml_type, size_t rows, size_t cols) {
  return PackableKQuantShape(ggml_type, rows, cols) &&
         HWY_DYNAMIC_DISPATCH(PackedKQuantAvailableT)();
}

void PackedKQuantMatMulGroups(uint32_t ggml_type, const void* packed, size_t cols,
                              const Activations& x, size_t v_begin, size_t v_end, size_t g_begin,
                              size_t g_end, float* y, size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(PackedKQuantMatMulGroupsT)
  (ggml_type, packed, cols, x, v_begin, v_end, g_begin, g_end, y, y_stride);
}

}  // namespace st
#endif  // HWY_ONCE
