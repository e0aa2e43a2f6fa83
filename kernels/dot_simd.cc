// st::DotRow / st::DotRows: Highway SIMD dot products with run-time dispatch
// to the best target (AVX3/AVX2/SSE4/SSSE3/scalar on x86). Each kernel keeps
// a float accumulator vector and reduces it once at the end.
//
//  F32           : 4 independent MulAdd accumulators over LoadU'd floats.
//  F16, BF16     : PromoteTo(f32) of the 16-bit weights (F16C on AVX2+),
//                  then MulAdd, 2 accumulators.
//  Q8_0 x Q8_0   : AVX2/AVX3: per block maddubs(|w|, sign(x, w)) + madd into
//                  8 exact int32 lanes (ggml's trick), two block accumulators.
//                  Other targets: int8 -> int16 PromoteTo on both sides and
//                  ReorderWidenMulAccumulate (pmaddwd) into int32 lanes.
//                  Either way the exact int32 partial sums are converted to
//                  float and MulAdd'ed with the broadcast d_w * d_x, as ggml.
//  Q4_0 x Q8_0   : same, with nibbles unpacked (low nibble = element i, high
//                  nibble = element i + 16) minus 8.
//  Q4_0/Q8_0 x f32 (no q8): weights widened to int32 -> float, dotted with x
//                  per block in float, the block sum scaled by d_w.
// Tails (n % lanes) are handled with scalar loops; no load reads past a row.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/dot_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <cstddef>
#include <cstring>

#include "kernels/dot.h"
#include "kernels/fp16.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {
namespace {

namespace hn = hwy::HWY_NAMESPACE;

float LoadScale(const char* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return F16ToF32(h);
}

float DotF32(const char* w_bytes, const float* x, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  // Weight rows may be unaligned (mmap'ed tensors): byte pointer + LoadU.
  const float* w = reinterpret_cast<const float*>(w_bytes);
  auto a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
  size_t j = 0;
  for (; j + 4 * N <= n; j += 4 * N) {
    a0 = hn::MulAdd(hn::LoadU(df, w + j), hn::LoadU(df, x + j), a0);
    a1 = hn::MulAdd(hn::LoadU(df, w + j + N), hn::LoadU(df, x + j + N), a1);
    a2 = hn::MulAdd(hn::LoadU(df, w + j + 2 * N), hn::LoadU(df, x + j + 2 * N), a2);
    a3 = hn::MulAdd(hn::LoadU(df, w + j + 3 * N), hn::LoadU(df, x + j + 3 * N), a3);
  }
  for (; j + N <= n; j += N) a0 = hn::MulAdd(hn::LoadU(df, w + j), hn::LoadU(df, x + j), a0);
  float tail = 0.0f;
  for (; j < n; ++j) {
    float wj;
    std::memcpy(&wj, w_bytes + 4 * j, 4);
    tail += wj * x[j];
  }
  const auto sum = hn::Add(hn::Add(a0, a1), hn::Add(a2, a3));
  return hn::GetLane(hn::SumOfLanes(df, sum)) + tail;
}

// F16 or BF16 weights: T is hwy::float16_t or hwy::bfloat16_t.
template <typename T, float (*kConvert)(uint16_t)>
float Dot16(const char* w_bytes, const float* x, size_t n) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<T, decltype(df)> dh;
  const size_t N = hn::Lanes(df);
  const T* w = reinterpret_cast<const T*>(w_bytes);
  auto a0 = hn::Zero(df), a1 = hn::Zero(df);
  size_t j = 0;
  for (; j + 2 * N <= n; j += 2 * N) {
    a0 = hn::MulAdd(hn::PromoteTo(df, hn::LoadU(dh, w + j)), hn::LoadU(df, x + j), a0);
    a1 = hn::MulAdd(hn::PromoteTo(df, hn::LoadU(dh, w + j + N)), hn::LoadU(df, x + j + N), a1);
  }
  for (; j + N <= n; j += N) {
    a0 = hn::MulAdd(hn::PromoteTo(df, hn::LoadU(dh, w + j)), hn::LoadU(df, x + j), a0);
  }
  float tail = 0.0f;
  for (; j < n; ++j) {
    uint16_t h;
    std::memcpy(&h, w_bytes + 2 * j, 2);
    tail += kConvert(h) * x[j];
  }
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, a1))) + tail;
}

// Tags for the integer block kernels: int16 lanes (capped so that the lane
// count divides kQK / 2), the int8 loads that widen into them, and the
// int32/float lanes the products accumulate into.
using D16 = hn::CappedTag<int16_t, kQK / 2>;
using D32 = hn::RepartitionToWide<D16>;
using DF32 = hn::Rebind<float, D32>;

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
// x86 AVX2 (also used by AVX3) integer block dots with the ggml trick:
// maddubs(|w|, sign(x, w)) sums pairs of int8 products into int16 lanes and
// madd(., 1) sums those into 8 int32 lanes: 4 instructions per 32-element
// block. Exact (no int16 saturation) because |w| <= 128 and Q8_0
// activations from QuantizeRow satisfy |x| <= 127: a pair is <= 32512.

// Block scale via F16C.
inline float ScaleF16C(const char* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline __m256 MulSumI8(__m256i qw, __m256i qx) {
  const __m256i abs_w = _mm256_sign_epi8(qw, qw);
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

// kBlockBytes = sizeof(BlockQ4_0) or sizeof(BlockQ8_0) selects the weight format.
template <size_t kBlockBytes>
float DotQ8Avx2(const char* w, const BlockQ8_0* x, size_t n) {
  const size_t n_blocks = n / kQK;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  auto weights = [](const char* block) {
    return kBlockBytes == sizeof(BlockQ4_0) ? LoadQ4_0(block)
                                            : LoadQ8(reinterpret_cast<const int8_t*>(block + 2));
  };
  size_t b = 0;
  for (; b + 2 <= n_blocks; b += 2, w += 2 * kBlockBytes) {
    const __m256 d0 = _mm256_set1_ps(ScaleF16C(w) * _cvtsh_ss(x[b].d));
    const __m256 d1 = _mm256_set1_ps(ScaleF16C(w + kBlockBytes) * _cvtsh_ss(x[b + 1].d));
    acc0 = _mm256_fmadd_ps(d0, MulSumI8(weights(w), LoadQ8(x[b].qs)), acc0);
    acc1 = _mm256_fmadd_ps(d1, MulSumI8(weights(w + kBlockBytes), LoadQ8(x[b + 1].qs)), acc1);
  }
  if (b < n_blocks) {
    const __m256 d0 = _mm256_set1_ps(ScaleF16C(w) * _cvtsh_ss(x[b].d));
    acc0 = _mm256_fmadd_ps(d0, MulSumI8(weights(w), LoadQ8(x[b].qs)), acc0);
  }
  return HorizontalSum(_mm256_add_ps(acc0, acc1));
}

float DotQ8_0Q8_0(const char* w, const BlockQ8_0* x, size_t n) {
  return DotQ8Avx2<sizeof(BlockQ8_0)>(w, x, n);
}
float DotQ4_0Q8_0(const char* w, const BlockQ8_0* x, size_t n) {
  return DotQ8Avx2<sizeof(BlockQ4_0)>(w, x, n);
}

#else  // generic Highway version for the other targets

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

#endif  // AVX2, AVX3, AVX3_DL

// Float lanes for quantized weights against f32: capped so lanes divide 16.
using DQ = hn::CappedTag<float, kQK / 2>;

float DotQ8_0F32(const char* w, const float* x, size_t n) {
  const DQ df;
  const hn::RebindToSigned<DQ> di;
  const hn::Rebind<int8_t, DQ> d8;
  const size_t N = hn::Lanes(df);
  auto acc = hn::Zero(df);
  for (size_t b = 0; b < n / kQK; ++b, w += sizeof(BlockQ8_0), x += kQK) {
    const int8_t* wq = reinterpret_cast<const int8_t*>(w + offsetof(BlockQ8_0, qs));
    auto block = hn::Zero(df);
    for (size_t c = 0; c < kQK; c += N) {
      const auto wv = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, wq + c)));
      block = hn::MulAdd(wv, hn::LoadU(df, x + c), block);
    }
    acc = hn::MulAdd(block, hn::Set(df, LoadScale(w)), acc);
  }
  return hn::GetLane(hn::SumOfLanes(df, acc));
}

float DotQ4_0F32(const char* w, const float* x, size_t n) {
  const DQ df;
  const hn::RebindToSigned<DQ> di;
  const hn::RebindToUnsigned<DQ> du;
  const hn::Rebind<uint8_t, DQ> du8;
  const size_t N = hn::Lanes(df);
  const auto mask = hn::Set(du, 0x0F);
  const auto eight = hn::Set(di, 8);
  auto acc = hn::Zero(df);
  for (size_t b = 0; b < n / kQK; ++b, w += sizeof(BlockQ4_0), x += kQK) {
    const uint8_t* qs = reinterpret_cast<const uint8_t*>(w + offsetof(BlockQ4_0, qs));
    auto block = hn::Zero(df);
    for (size_t c = 0; c < kQK / 2; c += N) {
      const auto packed = hn::PromoteTo(du, hn::LoadU(du8, qs + c));
      const auto lo = hn::ConvertTo(df, hn::Sub(hn::BitCast(di, hn::And(packed, mask)), eight));
      const auto hi = hn::ConvertTo(df, hn::Sub(hn::BitCast(di, hn::ShiftRight<4>(packed)), eight));
      block = hn::MulAdd(lo, hn::LoadU(df, x + c), block);
      block = hn::MulAdd(hi, hn::LoadU(df, x + kQK / 2 + c), block);
    }
    acc = hn::MulAdd(block, hn::Set(df, LoadScale(w)), acc);
  }
  return hn::GetLane(hn::SumOfLanes(df, acc));
}

float DotOne(DType wtype, const char* w, const VecRef& x) {
  switch (wtype) {
    case DType::kF32: return DotF32(w, x.f32, x.n);
    case DType::kF16: return Dot16<hwy::float16_t, F16ToF32>(w, x.f32, x.n);
    case DType::kBF16: return Dot16<hwy::bfloat16_t, BF16ToF32>(w, x.f32, x.n);
    case DType::kQ4_0:
      return x.q8 != nullptr ? DotQ4_0Q8_0(w, x.q8, x.n) : DotQ4_0F32(w, x.f32, x.n);
    case DType::kQ8_0:
      return x.q8 != nullptr ? DotQ8_0Q8_0(w, x.q8, x.n) : DotQ8_0F32(w, x.f32, x.n);
  }
  return 0.0f;
}

}  // namespace

float DotRowT(DType wtype, const void* w_row, const VecRef& x) {
  return DotOne(wtype, static_cast<const char*>(w_row), x);
}

void DotRowsT(DType wtype, const void* w, size_t row_bytes, size_t n_rows, const VecRef& x,
              float* y) {
  const char* row = static_cast<const char*>(w);
  for (size_t r = 0; r < n_rows; ++r, row += row_bytes) y[r] = DotOne(wtype, row, x);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(DotRowT);
HWY_EXPORT(DotRowsT);

float DotRow(DType wtype, const void* w_row, const VecRef& x) {
  return HWY_DYNAMIC_DISPATCH(DotRowT)(wtype, w_row, x);
}

void DotRows(DType wtype, const void* w, size_t row_bytes, size_t n_rows, const VecRef& x,
             float* y) {
  HWY_DYNAMIC_DISPATCH(DotRowsT)(wtype, w, row_bytes, n_rows, x, y);
}

}  // namespace st
#endif  // HWY_ONCE
