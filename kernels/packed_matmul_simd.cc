// st::PackedMatMulGroups and st::CanPack: the 16-row packed Q4_0/Q8_0 kernels
// (layout and numerics in packed_matrix.h), with run-time dispatch.
//
//  AVX3_DL (AVX-512 VNNI): per block, the 16 rows' weights in 8 registers
//      (Q4_0: 4 loads split into low/high nibbles; Q8_0: 8 loads of w + 128),
//      then per vector 8 dpbusd against activation dwords broadcast from the
//      Q8_0 block, started from the offset correction (-8 or -128 times the
//      block's level sum), one convert and one FMA with d_w * d_x.
//  AVX3 (no VNNI): the same with maddubs + madd; Q8_0 goes through ggml's
//      sign trick (|w| times x negated where w < 0) so no int16 saturates.
//  AVX2: the same on two 8-row halves of each group (the first half's pass
//      prefetches; the second finds the group in cache).
//  Other targets: CanPack is false (the row-major kernels are used).
// Up to 8 vectors share each block's unpacked weights. Integer sums are
// exact, so every target equals the scalar twin bit for bit.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/packed_matmul_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/avx512_vnni.h"
#include "kernels/matmul.h"
#include "kernels/packed_matrix.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {
namespace {

#if defined(__clang__)
#define ST_PACKED_UNROLL _Pragma("unroll")
#else
#define ST_PACKED_UNROLL _Pragma("GCC unroll 8")
#endif

constexpr size_t kMaxVecs = 8;
// Software prefetch: every kPrefetchBurst blocks, the lines of as many
// blocks further on, kPrefetchBytes ahead into L1 and again kPrefetchBytesFar
// ahead into L2. The far L2 prefetch keeps more lines in flight than the
// L1's miss buffers allow, so the near one finds them in L2; short bursts
// keep the L1's miss queue from overflowing (36 lines at once had been).
// Measured on the shared 2-vCPU Zen 4 VM of session 23 against the earlier
// scheme (8-block bursts, 2 KiB ahead into L1 for 1-2 vectors, 8 KiB ahead
// into L2 only for 3-8), BM_PackedMatMulCold alternated, a plain read ~30
// GB/s on 2 threads:
//  - 1 vector, 6144 rows, 2 threads: Q4_0 22.0-22.8 -> 29.2-31.7 GB/s (one
//    thread 10.9-11.5 -> 14.1-15.0; 768 rows 21.1-22.3 -> 26.6-29.4), Q8_0
//    24.0-26.1 -> 27.5-32.7 (3 runs each);
//  - 8 vectors (compute-bound), 2 threads: Q4_0 12.4-12.9 -> 13.3-18.2,
//    Q8_0 14.6-16.4 -> 18.6-24.1; 4 vectors Q4_0 14.9-18.1 -> 12.8-22.1
//    (median 16.8 -> 19.5), Q8_0 17.0-19.3 -> 21.4-29.8 (5 runs each);
//  - 4b decode (bench tg128, rounds alternated): Q4_0 43.1-46.2 ->
//    51.9-55.4 tok/s (65-75% -> 80-85% of its roofline; 4 rounds), Q8_0
//    25.8-27.5 -> 30.6-31.1 (72-78% -> 88-94%; 3 rounds).
//  - AVX2 (ST_BENCH_AVX2=1, same machine), which had no software prefetch
//    (2-3 runs each): 1 vector, 2 threads, Q4_0 11.9-13.5 -> 21.8-23.2
//    GB/s, Q8_0 13.7-16.2 -> 24.4-26.4; 8 vectors Q4_0 4.6-5.1 -> 6.5-7.7.
// In a standalone sweep (2 threads, 512 MiB of Q4_0), the L1 prefetch alone
// reached 23.5-26.3 GB/s in 2-block bursts 4 KiB ahead, and 8-block bursts
// were the slowest at every distance tried (1-8 KiB).
// Swept again on session 32's Intel Xeon (2 vCPUs, 15.4 GB/s plain read on
// one thread, 29.7 on two), against the 4 KiB / 12 KiB (L1 / L2) kept here:
// 1 KiB / 4 KiB took one thread's Q4_0 from 12.1-12.7 to 13.8-14.7 GB/s, two
// threads stayed at 25-28 GB/s whatever the distances, and 4b decode did
// not move (49.8-50.6 tok/s at 4/12 KiB, 49.9-51.4 at 2/4 KiB, 50.1-50.7
// at 1/4 KiB, 3 rounds alternated).
constexpr size_t kPrefetchBurst = 2;
constexpr size_t kPrefetchBytes = 4096;
constexpr size_t kPrefetchBytesFar = 12288;

// One activation vector as the kernels read it.
struct XRef {
  const BlockQ8_0* q8;
  const float* scale;
  const int32_t* sum;
};

inline int32_t LoadDword(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

#if HWY_ARCH_X86
// The software prefetch above, issued at block b of a group (it acts every
// kPrefetchBurst blocks); kData is PackedBlockDataBytes. Always inlined:
// GCC 12 would not inline it into Group (whose extra VNNI target differs),
// and then deleted the call, a void function of prefetches looking free of
// side effects.
template <size_t kData>
HWY_INLINE void PrefetchAhead(const uint8_t* group, size_t b) {
  if (b % kPrefetchBurst != 0) return;
  // Formed as an integer: the lines ahead may lie past the matrix (harmless,
  // a prefetch does not fault).
  const uintptr_t here = reinterpret_cast<uintptr_t>(group) + b * (kPackedScaleBytes + kData);
  ST_PACKED_UNROLL
  for (size_t c = 0; c < kPrefetchBurst * (kPackedScaleBytes + kData) / 64; ++c) {
    _mm_prefetch(reinterpret_cast<const char*>(here + kPrefetchBytes + 64 * c), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(here + kPrefetchBytesFar + 64 * c), _MM_HINT_T1);
  }
}
#endif

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

template <DType kType, size_t kVecs>
void Group(const uint8_t* group, size_t nb, const XRef* xs, float* y, size_t y_stride) {
  constexpr bool kQ4 = kType == DType::kQ4_0;
  constexpr size_t kChunks = kQ4 ? 4 : 8;
  constexpr size_t kData = PackedBlockDataBytes(kType);
  // Q8_0 on VNNI multiplies w + 128 (u8) and corrects with -128 * sum(x);
  // without VNNI it uses |w| and sign-flipped x (no correction).
  constexpr bool kOffset = kQ4 || HWY_TARGET == HWY_AVX3_DL;
  constexpr int32_t kCorr = kQ4 ? -8 : -128;
  constexpr size_t kChains = kVecs <= 2 ? 4 : (kVecs <= 4 ? 2 : 1);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  __m512 acc[kVecs];
  ST_PACKED_UNROLL
  for (size_t v = 0; v < kVecs; ++v) acc[v] = _mm512_setzero_ps();
  for (size_t b = 0; b < nb; ++b) {
    const __m512 wd = _mm512_cvtph_ps(_mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(group + PackedScalesOffset(b, nb, kData))));
    const uint8_t* blk = group + PackedDataOffset(b, nb, kData);
    PrefetchAhead<kData>(group, b);
    __m512i w[8];
    __mmask64 neg[8] = {};
    if constexpr (kQ4) {
      ST_PACKED_UNROLL
      for (size_t c = 0; c < 4; ++c) {
        const __m512i raw = _mm512_loadu_si512(blk + 64 * c);
        w[c] = _mm512_and_si512(raw, low4);
        w[4 + c] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
      }
    } else {
      ST_PACKED_UNROLL
      for (size_t c = 0; c < 8; ++c) {
        w[c] = _mm512_loadu_si512(blk + 64 * c);
        if constexpr (!kOffset) {
          const __m512i s = _mm512_xor_si512(w[c], _mm512_set1_epi8(static_cast<char>(0x80)));
          neg[c] = _mm512_movepi8_mask(s);
          w[c] = _mm512_abs_epi8(s);
        }
      }
    }
    // kChains independent integer sums per vector (dpbusd accumulates in
    // place, so one chain of 8 would be latency-bound with few vectors);
    // integer adds are exact, so the split does not change the result.
    // Registers outer, vectors inner: the vectors' dpbusd are independent,
    // so they issue back to back instead of waiting on one chain.
    __m512i s[kVecs][kChains];
    ST_PACKED_UNROLL
    for (size_t v = 0; v < kVecs; ++v) {
      s[v][0] = _mm512_set1_epi32(kOffset ? kCorr * xs[v].sum[b] : 0);
      ST_PACKED_UNROLL
      for (size_t k = 1; k < kChains; ++k) s[v][k] = _mm512_setzero_si512();
    }
    ST_PACKED_UNROLL
    for (size_t c = 0; c < 8; ++c) {
      // Q4_0: register c < 4 holds elements 4c.., c >= 4 elements 16 + 4(c-4)..
      const size_t off = kQ4 ? (c < 4 ? 4 * c : 16 + 4 * (c - 4)) : 4 * c;
      ST_PACKED_UNROLL
      for (size_t v = 0; v < kVecs; ++v) {
        __m512i xv = _mm512_set1_epi32(LoadDword(xs[v].q8[b].qs + off));
        if constexpr (!kOffset) xv = _mm512_mask_sub_epi8(xv, neg[c], _mm512_setzero_si512(), xv);
        s[v][c % kChains] = DotU8S8(s[v][c % kChains], w[c], xv);
      }
    }
    ST_PACKED_UNROLL
    for (size_t v = 0; v < kVecs; ++v) {
      __m512i sum = s[v][0];
      if constexpr (kChains == 4) {
        sum = _mm512_add_epi32(_mm512_add_epi32(s[v][0], s[v][1]),
                               _mm512_add_epi32(s[v][2], s[v][3]));
      } else if constexpr (kChains == 2) {
        sum = _mm512_add_epi32(s[v][0], s[v][1]);
      }
      const __m512 d = _mm512_mul_ps(wd, _mm512_set1_ps(xs[v].scale[b]));
      acc[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), d, acc[v]);
    }
  }
  ST_PACKED_UNROLL
  for (size_t v = 0; v < kVecs; ++v) _mm512_storeu_ps(y + v * y_stride, acc[v]);
}

#if HWY_TARGET == HWY_AVX3_DL
ST_AVX512VNNI_END
#endif

#elif HWY_TARGET == HWY_AVX2

constexpr bool kAvailable = true;

// Rows 8h .. 8h+7 of a group: 8 int32 lanes, maddubs + madd, Q8_0 with the
// sign trick.
template <DType kType, size_t kVecs>
void Half(const uint8_t* group, size_t nb, const XRef* xs, float* y, size_t y_stride, size_t h) {
  constexpr bool kQ4 = kType == DType::kQ4_0;
  constexpr size_t kChunks = kQ4 ? 4 : 8;
  constexpr size_t kData = PackedBlockDataBytes(kType);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[kVecs];
  ST_PACKED_UNROLL
  for (size_t v = 0; v < kVecs; ++v) acc[v] = _mm256_setzero_ps();
  for (size_t b = 0; b < nb; ++b) {
    const __m256 wd = _mm256_cvtph_ps(_mm_loadu_si128(
        reinterpret_cast<const __m128i*>(group + PackedScalesOffset(b, nb, kData) + 16 * h)));
    const uint8_t* blk = group + PackedDataOffset(b, nb, kData) + 32 * h;
    if (h == 0) PrefetchAhead<kData>(group, b);  // half 1 finds the group in cache
    __m256i w[8], sw[8];
    ST_PACKED_UNROLL
    for (size_t c = 0; c < kChunks; ++c) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 64 * c));
      if constexpr (kQ4) {
        w[c] = _mm256_and_si256(raw, low4);
        w[4 + c] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
      } else {
        sw[c] = _mm256_xor_si256(raw, _mm256_set1_epi8(static_cast<char>(0x80)));
        w[c] = _mm256_sign_epi8(sw[c], sw[c]);  // |w|
      }
    }
    ST_PACKED_UNROLL
    for (size_t v = 0; v < kVecs; ++v) {
      const int8_t* q = xs[v].q8[b].qs;
      __m256i s = _mm256_set1_epi32(kQ4 ? -8 * xs[v].sum[b] : 0);
      ST_PACKED_UNROLL
      for (size_t c = 0; c < 8; ++c) {
        const size_t off = kQ4 ? (c < 4 ? 4 * c : 16 + 4 * (c - 4)) : 4 * c;
        __m256i xv = _mm256_set1_epi32(LoadDword(q + off));
        if constexpr (!kQ4) xv = _mm256_sign_epi8(xv, sw[c]);
        s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(w[c], xv), ones));
      }
      const __m256 d = _mm256_mul_ps(wd, _mm256_set1_ps(xs[v].scale[b]));
      acc[v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc[v]);
    }
  }
  ST_PACKED_UNROLL
  for (size_t v = 0; v < kVecs; ++v) _mm256_storeu_ps(y + v * y_stride + 8 * h, acc[v]);
}

template <DType kType, size_t kVecs>
void Group(const uint8_t* group, size_t nb, const XRef* xs, float* y, size_t y_stride) {
  Half<kType, kVecs>(group, nb, xs, y, y_stride, 0);
  Half<kType, kVecs>(group, nb, xs, y, y_stride, 1);
}

#else

constexpr bool kAvailable = false;

template <DType kType, size_t kVecs>
void Group(const uint8_t*, size_t, const XRef*, float*, size_t) {}

#endif

template <DType kType>
void Groups(const void* packed, size_t cols, const Activations& x, size_t v_begin, size_t v_end,
            size_t g_begin, size_t g_end, float* y, size_t y_stride) {
  const size_t nb = cols / kQK;
  const size_t group_bytes = PackedGroupBytes(kType, cols);
  XRef xs[kMaxVecs];
  for (size_t g = g_begin; g < g_end; ++g) {
    const uint8_t* group = static_cast<const uint8_t*>(packed) + g * group_bytes;
    for (size_t v0 = v_begin; v0 < v_end; v0 += kMaxVecs) {
      const size_t count = std::min(kMaxVecs, v_end - v0);
      for (size_t k = 0; k < count; ++k) xs[k] = {x.q8(v0 + k), x.q8_scales(v0 + k), x.q8_sums(v0 + k)};
      float* out = y + (v0 - v_begin) * y_stride + g * kPackRows;
      switch (count) {
        case 8: Group<kType, 8>(group, nb, xs, out, y_stride); break;
        case 7: Group<kType, 7>(group, nb, xs, out, y_stride); break;
        case 6: Group<kType, 6>(group, nb, xs, out, y_stride); break;
        case 5: Group<kType, 5>(group, nb, xs, out, y_stride); break;
        case 4: Group<kType, 4>(group, nb, xs, out, y_stride); break;
        case 3: Group<kType, 3>(group, nb, xs, out, y_stride); break;
        case 2: Group<kType, 2>(group, nb, xs, out, y_stride); break;
        default: Group<kType, 1>(group, nb, xs, out, y_stride); break;
      }
    }
  }
}

}  // namespace

bool PackedAvailableT() { return kAvailable; }

void PackedMatMulGroupsT(DType type, const void* packed, size_t cols, const Activations& x,
                         size_t v_begin, size_t v_end, size_t g_begin, size_t g_end, float* y,
                         size_t y_stride) {
  if (!kAvailable) {
    scalar::PackedMatMulGroups(type, packed, cols, x, v_begin, v_end, g_begin, g_end, y, y_stride);
  } else if (type == DType::kQ4_0) {
    Groups<DType::kQ4_0>(packed, cols, x, v_begin, v_end, g_begin, g_end, y, y_stride);
  } else {
    Groups<DType::kQ8_0>(packed, cols, x, v_begin, v_end, g_begin, g_end, y, y_stride);
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(PackedAvailableT);
HWY_EXPORT(PackedMatMulGroupsT);

bool CanPack(DType type, size_t rows, size_t cols) {
  return (type == DType::kQ4_0 || type == DType::kQ8_0) && rows > 0 && rows % kPackRows == 0 &&
         cols > 0 && cols % kQK == 0 && HWY_DYNAMIC_DISPATCH(PackedAvailableT)();
}

void PackedMatMulGroups(DType type, const void* packed, size_t cols, const Activations& x,
                        size_t v_begin, size_t v_end, size_t g_begin, size_t g_end, float* y,
                        size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(PackedMatMulGroupsT)(type, packed, cols, x, v_begin, v_end, g_begin, g_end,
                                            y, y_stride);
}

void PackedMatMulGroups(DType type, const void* packed, size_t cols, const Activations& x,
                        size_t g_begin, size_t g_end, float* y, size_t y_stride) {
  st::PackedMatMulGroups(type, packed, cols, x, size_t{0}, x.n_vecs(), g_begin, g_end, y,
                         y_stride);
}

}  // namespace st
#endif  // HWY_ONCE
