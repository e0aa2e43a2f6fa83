// Q4_0/Q8_0 weights x Q8_0 activations: the integer block kernels of
// dot_simd.cc, one set per Highway target. Included by dot_simd.cc inside
// namespace st::HWY_NAMESPACE::(anonymous) once per target; not a public
// header. Every target defines:
//   XPair, XOperand, XPairs(n), PrepareX(x, n, scratch) -- an activation
//       vector in the layout the kernel reads (AVX-512: XPair records built
//       once per DotRowsMulti call; other targets: the Q8_0 blocks as is);
//   DotQ8K<kBlockBytes, kVecs>(w, x, n, out, pf) -- out[k] = dot(w row, x[k]);
//       pf (may be null) is a row to prefetch into L2 along the way where
//       kDotQ8Prefetches (AVX-512); other targets ignore it.
// Integer sums are exact on every target; see dot_test.cc for the bounds.

// NOLINT(build/header_guard): per-target re-inclusion (Highway -inl.h idiom).
#if defined(ST_KERNELS_DOT_Q8_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ST_KERNELS_DOT_Q8_INL_H_
#undef ST_KERNELS_DOT_Q8_INL_H_
#else
#define ST_KERNELS_DOT_Q8_INL_H_
#endif

// Tags for the integer block kernels: int16 lanes (capped so that the lane
// count divides kQK / 2), the int8 loads that widen into them, and the
// int32/float lanes the products accumulate into.
using D16 = hn::CappedTag<int16_t, kQK / 2>;
using D32 = hn::RepartitionToWide<D16>;
using DF32 = hn::Rebind<float, D32>;

// Integer block kernels, templated on the weight format (kBlockBytes =
// sizeof(BlockQ4_0) or sizeof(BlockQ8_0)) and on kVecs, the number of
// activation vectors dotted with the same weight row: each weight block is
// loaded and unpacked once for all of them (MatMul over several tokens).
// Every vector gets exactly the operations of the kVecs = 1 kernel, so
// DotRowsMulti is bit-identical to DotRow whatever the vector count.
// out[k] = dot(w, x[k]).

// Loops over the kVecs vectors must be unrolled so the accumulators stay in
// registers (GCC otherwise keeps arrays of them on the stack).
#if defined(__clang__)
#define ST_UNROLL_VECS _Pragma("unroll")
#else
#define ST_UNROLL_VECS _Pragma("GCC unroll 8")
#endif

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
// Block scale via F16C.
inline float ScaleF16C(const char* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
#endif

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
#if HWY_TARGET == HWY_AVX3_DL
ST_AVX512VNNI_BEGIN  // kernels/avx512_vnni.h
#endif
// AVX-512: two 32-element blocks per 512-bit register (lanes 0-7 of the int32
// sums belong to the first block, 8-15 to the second), scaled per half by
// d_w * d_x and MulAdd'ed into float lanes; 2 accumulators per vector.
// Each activation vector is first laid out as XPair records (PrepareX, once
// per DotRowsMulti call) so that the per-vector work per pair of blocks is a
// few instructions:
//  Q4_0: nibbles (u8, shared by all vectors) times x (s8), plus the
//        precomputed -8 * x sums: AVX3_DL one VNNI dpbusd, AVX3 maddubs +
//        madd (pairs <= 2 * 15 * 127, no int16 saturation).
//  Q8_0: ggml's sign trick, |w| (u8, shared) times x negated where w < 0:
//        dpbusd, or maddubs + madd (a pair is <= 2 * 128 * 127 = 32512:
//        exact because Q8_0 activations satisfy |x| <= 127).
// All integer sums are exact; the float scale d_w * d_x is rounded exactly
// as the scalar twin rounds it.

// Two consecutive activation blocks (the second all zeros past the end).
struct alignas(64) XPair {
  int8_t q[2 * kQK];  // levels of both blocks
  float scale[16];    // d_x of the first block in lanes 0-7, second in 8-15
  int32_t corr[16];   // -8 * sum of each group of 4 levels (Q4_0 offset)
};
using XOperand = const XPair*;
constexpr bool kDotQ8Prefetches = true;  // DotQ8K fetches `pf` as it goes

inline size_t XPairs(size_t n) { return (n / kQK + 1) / 2; }

inline __m256i Load256(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

inline __m512i Concat(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

inline uint16_t LoadHalf(const void* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

// Two fp16 scales as 16 float lanes (8 each); exact conversions.
inline __m512 HalfPair(uint16_t h0, uint16_t h1) {
  return _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16(static_cast<short>(h1)),
                                          _mm_set1_epi16(static_cast<short>(h0))));
}

// Sums of 4 adjacent u8 * s8 products into int32 lanes (exact for our ranges).
inline __m512i SumU8S8(__m512i u, __m512i s) {
#if HWY_TARGET == HWY_AVX3_DL
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s);
#else
  return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
#endif
}

// Lays out the Q8_0 vector x (n elements) as XPairs(n) records.
inline XOperand PrepareX(const BlockQ8_0* x, size_t n, XPair* out) {
  const size_t n_blocks = n / kQK;
  for (size_t p = 0; p < XPairs(n); ++p) {
    const size_t b = 2 * p;
    const bool two = b + 1 < n_blocks;
    const __m512i q = Concat(Load256(x[b].qs), two ? Load256(x[b + 1].qs) : _mm256_setzero_si256());
    _mm512_store_si512(out[p].q, q);
    _mm512_store_ps(out[p].scale, HalfPair(x[b].d, two ? x[b + 1].d : 0));
    const __m512i sum8 = SumU8S8(_mm512_set1_epi8(8), q);
    _mm512_store_si512(out[p].corr, _mm512_sub_epi32(_mm512_setzero_si512(), sum8));
  }
  return out;
}

// One or two weight blocks prepared for the u8 x s8 products.
struct WeightPair {
  __m512i u8;     // Q4_0: nibbles; Q8_0: |w|; in x's element order
  __mmask64 neg;  // Q8_0: lanes where w < 0 (x is negated there)
  __m512 scale;   // d_w of the first block in lanes 0-7, of the second in 8-15
};

// Weights of one block as 32 bytes in element order. Q4_0: low nibbles
// (elements 0-15) then high nibbles (16-31), as u8 0..15.
template <size_t kBlockBytes>
inline __m256i BlockWeights(const char* block) {
  if constexpr (kBlockBytes == sizeof(BlockQ8_0)) {
    return Load256(block + 2);
  } else {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
  }
}

// Blocks at w and (when `two`) w + kBlockBytes; a missing block is zeros.
template <size_t kBlockBytes>
inline WeightPair PrepPair(const char* w, bool two) {
#if HWY_TARGET == HWY_AVX3_DL
  if (kBlockBytes == sizeof(BlockQ4_0) && two) {
    // AVX512-VBMI: bytes 0-31 and 4-35 of the pair in one register, byte
    // permutes to [qs0, qs0, qs1, qs1] (128-bit lanes, the 2nd and 4th then
    // shifted right by 4) and to the two fp16 scales. (Masked loads are
    // avoided: slow on Zen 4 when the masked-off bytes cross a page.)
    alignas(64) static constexpr uint8_t kNibbleIdx[64] = {
        2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17,
        2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17,
        48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
        48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63};
    alignas(64) static constexpr uint8_t kScaleIdx[64] = {
        0,  1,  0,  1,  0,  1,  0,  1,  0,  1,  0,  1,  0,  1,  0,  1,
        18, 19, 18, 19, 18, 19, 18, 19, 18, 19, 18, 19, 18, 19, 18, 19};
    const __m512i raw = Concat(Load256(w), Load256(w + 4));
    const __m512i shift = _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0, 0,
                                           0x0004000400040004, 0x0004000400040004, 0, 0);
    const __m512i spread = _mm512_permutexvar_epi8(_mm512_load_si512(kNibbleIdx), raw);
    const __m512i nibbles =
        _mm512_and_si512(_mm512_srlv_epi16(spread, shift), _mm512_set1_epi8(0x0F));
    const __m512i halves = _mm512_permutexvar_epi8(_mm512_load_si512(kScaleIdx), raw);
    return {nibbles, 0, _mm512_cvtph_ps(_mm512_castsi512_si256(halves))};
  }
#endif
  const __m256i hi = two ? BlockWeights<kBlockBytes>(w + kBlockBytes) : _mm256_setzero_si256();
  const __m512i v = Concat(BlockWeights<kBlockBytes>(w), hi);
  const __m512 scale = HalfPair(LoadHalf(w), two ? LoadHalf(w + kBlockBytes) : 0);
  if constexpr (kBlockBytes == sizeof(BlockQ8_0)) {
    return {_mm512_abs_epi8(v), _mm512_movepi8_mask(v), scale};
  } else {
    return {v, 0, scale};
  }
}

// acc += float(sum of w * x) * (d_w * d_x) over the pair's 16 lanes.
template <size_t kBlockBytes>
inline __m512 PairMulAdd(const WeightPair& w, const XPair& x, __m512 acc) {
  const __m512i q = _mm512_load_si512(x.q);
  __m512i sum;
  if constexpr (kBlockBytes == sizeof(BlockQ8_0)) {
    sum = SumU8S8(w.u8, _mm512_mask_sub_epi8(q, w.neg, _mm512_setzero_si512(), q));
  } else {
    const __m512i corr = _mm512_load_si512(x.corr);
#if HWY_TARGET == HWY_AVX3_DL
    sum = _mm512_dpbusd_epi32(corr, w.u8, q);
#else
    sum = _mm512_add_epi32(SumU8S8(w.u8, q), corr);
#endif
  }
  const __m512 scale = _mm512_mul_ps(w.scale, _mm512_load_ps(x.scale));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc);
}

template <size_t kBlockBytes, size_t kVecs>
void DotQ8K(const char* w, const XOperand* x, size_t n, float* out, const char* pf = nullptr) {
  const size_t n_blocks = n / kQK;
  __m512 acc0[kVecs], acc1[kVecs];
  ST_UNROLL_VECS
  for (size_t k = 0; k < kVecs; ++k) acc0[k] = acc1[k] = _mm512_setzero_ps();
  size_t b = 0;
  for (; b + 4 <= n_blocks; b += 4, w += 4 * kBlockBytes) {
    if (pf != nullptr) {  // this step's bytes of the row to come: spread, not a burst
      const char* p = pf + b * kBlockBytes;
      _mm_prefetch(p, _MM_HINT_T1);
      _mm_prefetch(p + 64, _MM_HINT_T1);
      if constexpr (4 * kBlockBytes > 128) _mm_prefetch(p + 128, _MM_HINT_T1);
    }
    const WeightPair wa = PrepPair<kBlockBytes>(w, true);
    const WeightPair wb = PrepPair<kBlockBytes>(w + 2 * kBlockBytes, true);
    ST_UNROLL_VECS
    for (size_t k = 0; k < kVecs; ++k) {
      acc0[k] = PairMulAdd<kBlockBytes>(wa, x[k][b / 2], acc0[k]);
      acc1[k] = PairMulAdd<kBlockBytes>(wb, x[k][b / 2 + 1], acc1[k]);
    }
  }
  for (; b < n_blocks; b += 2, w += 2 * kBlockBytes) {  // 1 to 3 blocks left
    const WeightPair wa = PrepPair<kBlockBytes>(w, b + 2 <= n_blocks);
    ST_UNROLL_VECS
    for (size_t k = 0; k < kVecs; ++k) acc0[k] = PairMulAdd<kBlockBytes>(wa, x[k][b / 2], acc0[k]);
  }
  ST_UNROLL_VECS
  for (size_t k = 0; k < kVecs; ++k) out[k] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[k], acc1[k]));
}

#if HWY_TARGET == HWY_AVX3_DL
ST_AVX512VNNI_END
#endif

#elif HWY_TARGET == HWY_AVX2
// x86 AVX2 integer block dots with the ggml trick:
// maddubs(|w|, sign(x, w)) sums pairs of int8 products into int16 lanes and
// madd(., 1) sums those into 8 int32 lanes: 4 instructions per 32-element
// block. Exact (no int16 saturation) because |w| <= 128 and Q8_0
// activations from QuantizeRow satisfy |x| <= 127: a pair is <= 32512.

inline __m256 MulSumI8(__m256i abs_w, __m256i qw, __m256i qx) {
  const __m256i signed_x = _mm256_sign_epi8(qx, qw);
  const __m256i pairs = _mm256_maddubs_epi16(abs_w, signed_x);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

inline float HorizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

inline __m256i LoadQ4_0(const char* block) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2));
  const __m256i nibbles = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw),
                                           _mm256_set1_epi8(0x0F));
  return _mm256_sub_epi8(nibbles, _mm256_set1_epi8(8));
}

inline __m256i LoadQ8(const int8_t* qs) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs));
}

template <size_t kBlockBytes>
inline __m256i Weights(const char* block) {
  if constexpr (kBlockBytes == sizeof(BlockQ4_0)) {
    return LoadQ4_0(block);
  } else {
    return LoadQ8(reinterpret_cast<const int8_t*>(block + 2));
  }
}

using XOperand = const BlockQ8_0*;
constexpr bool kDotQ8Prefetches = false;  // DotQ8K ignores `pf`
struct XPair {};  // unused: the AVX2 kernel reads the Q8_0 blocks directly
inline size_t XPairs(size_t) { return 0; }
inline XOperand PrepareX(const BlockQ8_0* x, size_t, XPair*) { return x; }

template <size_t kBlockBytes, size_t kVecs>
void DotQ8K(const char* w, const XOperand* x, size_t n, float* out,
            const char* /*pf*/ = nullptr) {
  const size_t n_blocks = n / kQK;
  __m256 acc0[kVecs], acc1[kVecs];
  ST_UNROLL_VECS
  for (size_t k = 0; k < kVecs; ++k) acc0[k] = acc1[k] = _mm256_setzero_ps();
  size_t b = 0;
  for (; b + 2 <= n_blocks; b += 2, w += 2 * kBlockBytes) {
    const float dw0 = ScaleF16C(w), dw1 = ScaleF16C(w + kBlockBytes);
    const __m256i w0 = Weights<kBlockBytes>(w), w1 = Weights<kBlockBytes>(w + kBlockBytes);
    const __m256i a0 = _mm256_sign_epi8(w0, w0), a1 = _mm256_sign_epi8(w1, w1);
    ST_UNROLL_VECS
    for (size_t k = 0; k < kVecs; ++k) {
      const __m256 d0 = _mm256_set1_ps(dw0 * _cvtsh_ss(x[k][b].d));
      const __m256 d1 = _mm256_set1_ps(dw1 * _cvtsh_ss(x[k][b + 1].d));
      acc0[k] = _mm256_fmadd_ps(d0, MulSumI8(a0, w0, LoadQ8(x[k][b].qs)), acc0[k]);
      acc1[k] = _mm256_fmadd_ps(d1, MulSumI8(a1, w1, LoadQ8(x[k][b + 1].qs)), acc1[k]);
    }
  }
  if (b < n_blocks) {
    const float dw0 = ScaleF16C(w);
    const __m256i w0 = Weights<kBlockBytes>(w);
    const __m256i a0 = _mm256_sign_epi8(w0, w0);
    ST_UNROLL_VECS
    for (size_t k = 0; k < kVecs; ++k) {
      const __m256 d0 = _mm256_set1_ps(dw0 * _cvtsh_ss(x[k][b].d));
      acc0[k] = _mm256_fmadd_ps(d0, MulSumI8(a0, w0, LoadQ8(x[k][b].qs)), acc0[k]);
    }
  }
  ST_UNROLL_VECS
  for (size_t k = 0; k < kVecs; ++k) out[k] = HorizontalSum(_mm256_add_ps(acc0[k], acc1[k]));
}

#else  // generic Highway version for the other targets: one vector at a time

float DotQ8_0Q8_0(const char* w, const BlockQ8_0* x, size_t n) {
  const D16 d16;
  const hn::Rebind<int8_t, D16> d8;
  const D32 d32;
  const DF32 df;
  const size_t N = hn::Lanes(d16);
  auto acc = hn::Zero(df);
  for (size_t b = 0; b < n / kQK; ++b, w += sizeof(BlockQ8_0)) {
    const int8_t* wq = reinterpret_cast<const int8_t*>(w + offsetof(BlockQ8_0, qs));
    auto sum0 = hn::Zero(d32), sum1 = hn::Zero(d32);
    for (size_t c = 0; c < kQK; c += N) {
      const auto wv = hn::PromoteTo(d16, hn::LoadU(d8, wq + c));
      const auto xv = hn::PromoteTo(d16, hn::LoadU(d8, x[b].qs + c));
      sum0 = hn::ReorderWidenMulAccumulate(d32, wv, xv, sum0, sum1);
    }
    const float scale = LoadScale(w) * F16ToF32(x[b].d);
    acc = hn::MulAdd(hn::ConvertTo(df, hn::Add(sum0, sum1)), hn::Set(df, scale), acc);
  }
  return hn::GetLane(hn::SumOfLanes(df, acc));
}

float DotQ4_0Q8_0(const char* w, const BlockQ8_0* x, size_t n) {
  const D16 d16;
  const hn::RebindToUnsigned<D16> du16;
  const hn::Rebind<int8_t, D16> d8;
  const hn::Rebind<uint8_t, D16> du8;
  const D32 d32;
  const DF32 df;
  const size_t N = hn::Lanes(d16);
  const auto mask = hn::Set(du16, 0x0F);
  const auto eight = hn::Set(d16, 8);
  auto acc = hn::Zero(df);
  for (size_t b = 0; b < n / kQK; ++b, w += sizeof(BlockQ4_0)) {
    const uint8_t* qs = reinterpret_cast<const uint8_t*>(w + offsetof(BlockQ4_0, qs));
    auto sum0 = hn::Zero(d32), sum1 = hn::Zero(d32);
    for (size_t c = 0; c < kQK / 2; c += N) {
      const auto packed = hn::PromoteTo(du16, hn::LoadU(du8, qs + c));
      const auto lo = hn::Sub(hn::BitCast(d16, hn::And(packed, mask)), eight);
      const auto hi = hn::Sub(hn::BitCast(d16, hn::ShiftRight<4>(packed)), eight);
      const auto x_lo = hn::PromoteTo(d16, hn::LoadU(d8, x[b].qs + c));
      const auto x_hi = hn::PromoteTo(d16, hn::LoadU(d8, x[b].qs + kQK / 2 + c));
      sum0 = hn::ReorderWidenMulAccumulate(d32, lo, x_lo, sum0, sum1);
      sum0 = hn::ReorderWidenMulAccumulate(d32, hi, x_hi, sum0, sum1);
    }
    const float scale = LoadScale(w) * F16ToF32(x[b].d);
    acc = hn::MulAdd(hn::ConvertTo(df, hn::Add(sum0, sum1)), hn::Set(df, scale), acc);
  }
  return hn::GetLane(hn::SumOfLanes(df, acc));
}

using XOperand = const BlockQ8_0*;
constexpr bool kDotQ8Prefetches = false;
struct XPair {};  // unused: the kernels read the Q8_0 blocks directly
inline size_t XPairs(size_t) { return 0; }
inline XOperand PrepareX(const BlockQ8_0* x, size_t, XPair*) { return x; }

template <size_t kBlockBytes, size_t kVecs>
void DotQ8K(const char* w, const XOperand* x, size_t n, float* out,
            const char* /*pf*/ = nullptr) {
  ST_UNROLL_VECS
  for (size_t k = 0; k < kVecs; ++k) {
    out[k] = kBlockBytes == sizeof(BlockQ8_0) ? DotQ8_0Q8_0(w, x[k], n) : DotQ4_0Q8_0(w, x[k], n);
  }
}

#endif  // AVX2, AVX3, AVX3_DL

#endif  // ST_KERNELS_DOT_Q8_INL_H_ toggle
