// st::DotRowsIndexedSplitQ4_0 (kernels/split_rows.h), Highway dispatch.
// AVX3_DL: 4 blocks (one 64-byte run of levels) per step:
//   lo = levels & 0xF, hi = levels >> 4 & 0xF (elements 0-15 and 16-31 of
//   each block), s = dpbusd(dpbusd(corr, lo, x_lo), hi, x_hi): int32 lanes
//   4j..4j+3 hold block j's sums (exact; corr = -8 * the x sums for Q4_0's
//   offset), then acc += float(s) * (d_w * d_x), the 4 fp16 scales
//   converted and spread over their lanes by one permute.
// AVX2, and AVX3 (AVX-512 without VNNI): the same per 2 blocks with
// maddubs + madd (the same exact int32 sums). The vectors are laid out
// once per call (XQuad records). Other targets, and widths that are not
// whole 4-block runs: the rows are joined into a buffer and dotted by
// DotRowsMulti.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/split_rows_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include "kernels/avx512_vnni.h"
#include "kernels/quant.h"
#include "kernels/split_rows.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {
namespace {

// Rows joined into plain Q4_0 in batches and dotted by DotRowsMulti; the
// batch's rows are fetched a batch ahead (scattered rows defeat the
// hardware prefetcher).
void JoinedRows(const char* w, size_t row_bytes, const uint32_t* rows, size_t n_rows,
                const VecRef* xs, size_t n_vecs, float* y, size_t y_stride) {
  constexpr size_t kBatch = 8;
  const size_t n = n_vecs > 0 ? xs[0].n : 0;
  thread_local std::vector<char> joined;
  thread_local std::vector<float> out;
  joined.resize(kBatch * row_bytes);
  out.resize(kBatch * n_vecs);
  for (size_t k0 = 0; k0 < n_rows; k0 += kBatch) {
    const size_t count = std::min(kBatch, n_rows - k0);
    for (size_t k = 0; k < count; ++k) {
      if (k0 + kBatch + k < n_rows) {
        const char* next = w + rows[k0 + kBatch + k] * row_bytes;
        for (size_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(next + off, 0, 2);
      }
      JoinQ4_0Row(w + rows[k0 + k] * row_bytes, n, joined.data() + k * row_bytes);
    }
    DotRowsMulti(DType::kQ4_0, joined.data(), row_bytes, count, xs, n_vecs, out.data(), kBatch);
    for (size_t i = 0; i < n_vecs; ++i) {
      for (size_t k = 0; k < count; ++k) y[i * y_stride + rows[k0 + k]] = out[i * kBatch + k];
    }
  }
}

#if HWY_TARGET == HWY_AVX3_DL || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX2

// One activation vector's 4 consecutive Q8_0 blocks, in the order the
// split levels unpack to.
struct alignas(64) XQuad {
  int8_t lo[64];      // elements 0-15 of blocks 0..3
  int8_t hi[64];      // elements 16-31 of blocks 0..3
  int32_t corr[16];   // -8 * (sum of 4 lo + 4 hi elements) per lane
  float d[16];        // d_x of block j in lanes 4j..4j+3
};

// Lays out x (n elements, n % 128 == 0) as n / 128 XQuads, two blocks per
// 256-bit step (every target here has AVX2): the group sums by maddubs against
// ones (exact: |x| <= 127) and madd.
void PrepareQuads(const BlockQ8_0* x, size_t n, XQuad* out) {
  const auto load128 = [](const void* p) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  };
  const auto store256 = [](void* p, __m256i v) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(p), v);
  };
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  for (size_t q = 0; q < n / (4 * kQK); ++q) {
    XQuad& o = out[q];
    for (size_t h = 0; h < 2; ++h) {
      const BlockQ8_0& b0 = x[4 * q + 2 * h];
      const BlockQ8_0& b1 = x[4 * q + 2 * h + 1];
      const __m256i lo = _mm256_set_m128i(load128(b1.qs), load128(b0.qs));
      const __m256i hi = _mm256_set_m128i(load128(b1.qs + 16), load128(b0.qs + 16));
      store256(o.lo + 32 * h, lo);
      store256(o.hi + 32 * h, hi);
      const __m256i sum = _mm256_add_epi32(
          _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, lo), ones16),
          _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, hi), ones16));
      store256(o.corr + 8 * h, _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sum, 3)));
      uint16_t d0, d1;
      std::memcpy(&d0, &b0.d, 2);
      std::memcpy(&d1, &b1.d, 2);
      _mm256_store_ps(o.d + 8 * h,
                      _mm256_set_m128(_mm_set1_ps(_cvtsh_ss(d1)), _mm_set1_ps(_cvtsh_ss(d0))));
    }
  }
}

#if HWY_TARGET == HWY_AVX3_DL
ST_AVX512VNNI_BEGIN
// The kernel fetches the rows at `pf` and `near` a few lines per step.
constexpr bool kSpreadPrefetch = true;

// The 4 blocks' levels at p: low and high nibbles as u8 0..15.
struct Levels {
  __m512i lo, hi;
  __m512 scale;  // d_w of block j in lanes 4j..4j+3
};

inline Levels LoadLevels(const char* levels, const char* scales) {
  const __m512i v = _mm512_loadu_si512(levels);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m128 d4 = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(scales)));
  const __m512i spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  return {_mm512_and_si512(v, low4), _mm512_and_si512(_mm512_srli_epi16(v, 4), low4),
          _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(d4))};
}

inline __m512 QuadMulAdd(const Levels& w, const XQuad& x, __m512 acc) {
  __m512i s = _mm512_dpbusd_epi32(_mm512_load_si512(x.corr), w.lo, _mm512_load_si512(x.lo));
  s = _mm512_dpbusd_epi32(s, w.hi, _mm512_load_si512(x.hi));
  const __m512 scale = _mm512_mul_ps(w.scale, _mm512_load_ps(x.d));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc);
}

// out[k] = dot(split row, x[k]) over n_quads runs of 4 blocks; the rows at
// pf and near (either may be null, row_bytes long) are prefetched into L2
// and L1 along the way, a few lines per step.
template <size_t kVecs>
void DotSplitK(const char* row, const XQuad* const* x, size_t n_quads, float* out,
               const char* pf, size_t row_bytes, const char* near) {
  const char* scales = row;
  const char* levels = row + 8 * n_quads;
  __m512 acc0[kVecs], acc1[kVecs];
#pragma GCC unroll 4
  for (size_t k = 0; k < kVecs; ++k) acc0[k] = acc1[k] = _mm512_setzero_ps();
  constexpr size_t kStepBytes = 2 * 4 * sizeof(BlockQ4_0);  // of the row, per 2 quads
  size_t q = 0;
  for (; q + 2 <= n_quads; q += 2) {
    if (pf != nullptr) {
      const char* p = pf + q / 2 * kStepBytes;
      _mm_prefetch(p, _MM_HINT_T1);
      _mm_prefetch(p + 64, _MM_HINT_T1);
      _mm_prefetch(p + 128, _MM_HINT_T1);
    }
    if (near != nullptr) {
      const char* p = near + q / 2 * kStepBytes;
      _mm_prefetch(p, _MM_HINT_T0);
      _mm_prefetch(p + 64, _MM_HINT_T0);
      _mm_prefetch(p + 128, _MM_HINT_T0);
    }
    const Levels wa = LoadLevels(levels + 64 * q, scales + 8 * q);
    const Levels wb = LoadLevels(levels + 64 * (q + 1), scales + 8 * (q + 1));
#pragma GCC unroll 4
    for (size_t k = 0; k < kVecs; ++k) {
      acc0[k] = QuadMulAdd(wa, x[k][q], acc0[k]);
      acc1[k] = QuadMulAdd(wb, x[k][q + 1], acc1[k]);
    }
  }
  if (q < n_quads) {
    const Levels wa = LoadLevels(levels + 64 * q, scales + 8 * q);
#pragma GCC unroll 4
    for (size_t k = 0; k < kVecs; ++k) acc0[k] = QuadMulAdd(wa, x[k][q], acc0[k]);
  }
  if (pf != nullptr) _mm_prefetch(pf + row_bytes - 1, _MM_HINT_T1);
  if (near != nullptr) _mm_prefetch(near + row_bytes - 1, _MM_HINT_T0);
#pragma GCC unroll 4
  for (size_t k = 0; k < kVecs; ++k) out[k] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[k], acc1[k]));
}
ST_AVX512VNNI_END

#else  // AVX2 (and AVX3 without VNNI): 2 blocks (32 bytes of levels) per 256-bit register
// The kernel ignores `pf` and `near`: QuadRows fetches whole rows ahead.
constexpr bool kSpreadPrefetch = false;

inline float HorizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// acc += float(the int32 sums of blocks 2h, 2h + 1 of the quad) * (d_w *
// d_x): maddubs of the u8 levels (<= 15) with the s8 x pairs to <= 3810,
// the lo and hi halves added (<= 7620, no int16 saturation), madd to int32,
// then the -8 offset: the same exact integers as the AVX-512 kernel.
inline __m256 HalfMulAdd(__m256i lo, __m256i hi, __m256 dw, const XQuad& x, size_t h,
                         __m256 acc) {
  const auto load = [](const void* p) {
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(p));
  };
  const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(lo, load(x.lo + 32 * h)),
                                         _mm256_maddubs_epi16(hi, load(x.hi + 32 * h)));
  const __m256i s =
      _mm256_add_epi32(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)), load(x.corr + 8 * h));
  const __m256 scale = _mm256_mul_ps(dw, _mm256_load_ps(x.d + 8 * h));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc);
}

template <size_t kVecs>
void DotSplitK(const char* row, const XQuad* const* x, size_t n_quads, float* out,
               const char* /*pf*/, size_t /*row_bytes*/, const char* /*near*/) {
  const char* scales = row;
  const char* levels = row + 8 * n_quads;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 acc0[kVecs], acc1[kVecs];
#pragma GCC unroll 4
  for (size_t k = 0; k < kVecs; ++k) acc0[k] = acc1[k] = _mm256_setzero_ps();
  for (size_t q = 0; q < n_quads; ++q) {
    uint16_t h[4];
    std::memcpy(h, scales + 8 * q, 8);
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(levels + 64 * q));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(levels + 64 * q + 32));
    const __m256i lo0 = _mm256_and_si256(v0, low4), lo1 = _mm256_and_si256(v1, low4);
    const __m256i hi0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), low4);
    const __m256i hi1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), low4);
    const __m256 dw0 = _mm256_set_m128(_mm_set1_ps(_cvtsh_ss(h[1])), _mm_set1_ps(_cvtsh_ss(h[0])));
    const __m256 dw1 = _mm256_set_m128(_mm_set1_ps(_cvtsh_ss(h[3])), _mm_set1_ps(_cvtsh_ss(h[2])));
#pragma GCC unroll 4
    for (size_t k = 0; k < kVecs; ++k) {
      acc0[k] = HalfMulAdd(lo0, hi0, dw0, x[k][q], 0, acc0[k]);
      acc1[k] = HalfMulAdd(lo1, hi1, dw1, x[k][q], 1, acc1[k]);
    }
  }
#pragma GCC unroll 4
  for (size_t k = 0; k < kVecs; ++k) out[k] = HorizontalSum(_mm256_add_ps(acc0[k], acc1[k]));
}
#endif  // AVX3_DL, AVX2

void QuadRows(const char* w, size_t row_bytes, const uint32_t* rows, size_t n_rows,
              const VecRef* xs, size_t n_vecs, float* y, size_t y_stride) {
  constexpr size_t kMaxVecs = 4;
  // Rows ahead fetched into L2 (as DotRowsIndexed's plain-layout kernel).
  constexpr size_t kRowsAhead = 8;
  const size_t n = xs[0].n, n_quads = n / (4 * kQK);
  thread_local std::vector<XQuad> scratch;
  thread_local std::vector<const XQuad*> quads;
  scratch.resize(n_vecs * n_quads);
  quads.resize(n_vecs);
  for (size_t i = 0; i < n_vecs; ++i) {
    quads[i] = scratch.data() + i * n_quads;
    PrepareQuads(xs[i].q8, n, scratch.data() + i * n_quads);
  }
  for (size_t r = 0; r < n_rows; ++r) {
    const char* row = w + rows[r] * row_bytes;
    const char* pf = r + kRowsAhead < n_rows ? w + rows[r + kRowsAhead] * row_bytes : nullptr;
    // And the row 2 on into L1: without it the split kernel was no faster
    // than the plain one once the weights came from L3 or DRAM
    // (model_sparse_phases_benchmark, decode step, session 24: 3 of 3
    // rounds slower; with it 9 of 9 faster, 2-13%). The plain kernel does
    // not gain from it (3 rounds). AVX3_DL spreads it over the kernel's
    // steps as it does the L2 one (a burst before the row showed in perf as
    // time stalled on its prefetcht0; spread: 6 rounds, the cold step 6-19%
    // faster than the plain kernel).
    const char* near = r + 2 < n_rows ? w + rows[r + 2] * row_bytes : nullptr;
    if (!kSpreadPrefetch && near != nullptr) {
      for (size_t off = 0; off < row_bytes; off += 64) _mm_prefetch(near + off, _MM_HINT_T0);
      _mm_prefetch(near + row_bytes - 1, _MM_HINT_T0);
    }
    if (!kSpreadPrefetch && pf != nullptr) {
      for (size_t off = 0; off < row_bytes; off += 64) _mm_prefetch(pf + off, _MM_HINT_T1);
      _mm_prefetch(pf + row_bytes - 1, _MM_HINT_T1);
    }
    for (size_t i = 0; i < n_vecs; i += kMaxVecs) {
      const size_t count = std::min(kMaxVecs, n_vecs - i);
      float out[kMaxVecs];
      const XQuad* const* px = quads.data() + i;
      const char* pf_i = i == 0 ? pf : nullptr;
      const char* near_i = i == 0 ? near : nullptr;
      switch (count) {
        case 4: DotSplitK<4>(row, px, n_quads, out, pf_i, row_bytes, near_i); break;
        case 3: DotSplitK<3>(row, px, n_quads, out, pf_i, row_bytes, near_i); break;
        case 2: DotSplitK<2>(row, px, n_quads, out, pf_i, row_bytes, near_i); break;
        default: DotSplitK<1>(row, px, n_quads, out, pf_i, row_bytes, near_i); break;
      }
      for (size_t k = 0; k < count; ++k) y[(i + k) * y_stride + rows[r]] = out[k];
    }
  }
}

#endif  // AVX3_DL || AVX3 || AVX2

}  // namespace

void DotRowsIndexedSplitQ4_0T(const void* w, size_t row_bytes, const uint32_t* rows,
                              size_t n_rows, const VecRef* xs, size_t n_vecs, float* y,
                              size_t y_stride) {
  if (n_rows == 0 || n_vecs == 0) return;
  const char* base = static_cast<const char*>(w);
#if HWY_TARGET == HWY_AVX3_DL || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX2
  bool fast = xs[0].n % (4 * kQK) == 0;
  for (size_t i = 0; i < n_vecs; ++i) fast = fast && xs[i].q8 != nullptr;
  if (fast) return QuadRows(base, row_bytes, rows, n_rows, xs, n_vecs, y, y_stride);
#endif
  JoinedRows(base, row_bytes, rows, n_rows, xs, n_vecs, y, y_stride);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(DotRowsIndexedSplitQ4_0T);

void DotRowsIndexedSplitQ4_0(const void* w, size_t row_bytes, const uint32_t* rows,
                             size_t n_rows, const VecRef* xs, size_t n_vecs, float* y,
                             size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(DotRowsIndexedSplitQ4_0T)(w, row_bytes, rows, n_rows, xs, n_vecs, y,
                                                 y_stride);
}

}  // namespace st
#endif  // HWY_ONCE
