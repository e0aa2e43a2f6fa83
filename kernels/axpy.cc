// st::AxpyRow with Highway dispatch: y += a * w without materializing the
// dequantized row. Per target:
//  F32, F16, BF16: widen the weights to float lanes (PromoteTo for 16-bit
//                  types), y = MulAdd(a, w, y); scalar tail.
//  Q8_0, Q4_0:     per block, levels widened int8/nibble -> int32 -> float
//                  (nibbles: low = element i, high = element i + 16, minus 8),
//                  y = MulAdd(a * d, level, y).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/axpy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <cstddef>
#include <cstring>

#include "kernels/axpy.h"
#include "kernels/fp16.h"
#include "kernels/quant.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {
namespace {

namespace hn = hwy::HWY_NAMESPACE;

// a * w + y with the same instruction the vector body uses (a fused
// multiply-add where the target has one), so an element's result does not
// depend on whether it falls in the body or the tail: callers that split a
// row into column ranges (across threads) get the same numbers for any split.
inline float MulAdd1(float a, float w, float y) {
  const hn::CappedTag<float, 1> d1;
  return hn::GetLane(hn::MulAdd(hn::Set(d1, a), hn::Set(d1, w), hn::Set(d1, y)));
}

void AxpyF32(const char* w_bytes, float a, float* y, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  const float* w = reinterpret_cast<const float*>(w_bytes);
  const auto va = hn::Set(df, a);
  size_t j = 0;
  for (; j + N <= n; j += N) {
    hn::StoreU(hn::MulAdd(va, hn::LoadU(df, w + j), hn::LoadU(df, y + j)), df, y + j);
  }
  for (; j < n; ++j) {
    float wj;
    std::memcpy(&wj, w_bytes + 4 * j, 4);
    y[j] = MulAdd1(a, wj, y[j]);
  }
}

template <typename T, float (*kConvert)(uint16_t)>
void Axpy16(const char* w_bytes, float a, float* y, size_t n) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<T, decltype(df)> dh;
  const size_t N = hn::Lanes(df);
  const T* w = reinterpret_cast<const T*>(w_bytes);
  const auto va = hn::Set(df, a);
  size_t j = 0;
  for (; j + N <= n; j += N) {
    const auto wv = hn::PromoteTo(df, hn::LoadU(dh, w + j));
    hn::StoreU(hn::MulAdd(va, wv, hn::LoadU(df, y + j)), df, y + j);
  }
  for (; j < n; ++j) {
    uint16_t h;
    std::memcpy(&h, w_bytes + 2 * j, 2);
    y[j] = MulAdd1(a, kConvert(h), y[j]);
  }
}

// Float lanes capped so that the lane count divides kQK / 2.
using DQ = hn::CappedTag<float, kQK / 2>;

float BlockScale(const char* block) {
  uint16_t h;
  std::memcpy(&h, block, 2);
  return F16ToF32(h);
}

void AxpyQ8_0(const char* w, float a, float* y, size_t n) {
  const DQ df;
  const hn::RebindToSigned<DQ> di;
  const hn::Rebind<int8_t, DQ> d8;
  const size_t N = hn::Lanes(df);
  for (size_t b = 0; b < n / kQK; ++b, w += sizeof(BlockQ8_0), y += kQK) {
    const int8_t* qs = reinterpret_cast<const int8_t*>(w + offsetof(BlockQ8_0, qs));
    const auto ad = hn::Set(df, a * BlockScale(w));
    for (size_t c = 0; c < kQK; c += N) {
      const auto q = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, qs + c)));
      hn::StoreU(hn::MulAdd(ad, q, hn::LoadU(df, y + c)), df, y + c);
    }
  }
}

void AxpyQ4_0(const char* w, float a, float* y, size_t n) {
  const DQ df;
  const hn::RebindToSigned<DQ> di;
  const hn::RebindToUnsigned<DQ> du;
  const hn::Rebind<uint8_t, DQ> du8;
  const size_t N = hn::Lanes(df);
  const auto mask = hn::Set(du, 0x0F);
  const auto eight = hn::Set(di, 8);
  for (size_t b = 0; b < n / kQK; ++b, w += sizeof(BlockQ4_0), y += kQK) {
    const uint8_t* qs = reinterpret_cast<const uint8_t*>(w + offsetof(BlockQ4_0, qs));
    const auto ad = hn::Set(df, a * BlockScale(w));
    for (size_t c = 0; c < kQK / 2; c += N) {
      const auto packed = hn::PromoteTo(du, hn::LoadU(du8, qs + c));
      const auto lo = hn::ConvertTo(df, hn::Sub(hn::BitCast(di, hn::And(packed, mask)), eight));
      const auto hi = hn::ConvertTo(df, hn::Sub(hn::BitCast(di, hn::ShiftRight<4>(packed)), eight));
      hn::StoreU(hn::MulAdd(ad, lo, hn::LoadU(df, y + c)), df, y + c);
      hn::StoreU(hn::MulAdd(ad, hi, hn::LoadU(df, y + kQK / 2 + c)), df, y + kQK / 2 + c);
    }
  }
}

}  // namespace

void AxpyRowT(DType type, const void* w_row, float a, float* y, size_t n) {
  const char* w = static_cast<const char*>(w_row);
  switch (type) {
    case DType::kF32: return AxpyF32(w, a, y, n);
    case DType::kF16: return Axpy16<hwy::float16_t, F16ToF32>(w, a, y, n);
    case DType::kBF16: return Axpy16<hwy::bfloat16_t, BF16ToF32>(w, a, y, n);
    case DType::kQ8_0: return AxpyQ8_0(w, a, y, n);
    case DType::kQ4_0: return AxpyQ4_0(w, a, y, n);
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(AxpyRowT);

void AxpyRow(DType type, const void* w_row, float a, float* y, size_t n) {
  HWY_DYNAMIC_DISPATCH(AxpyRowT)(type, w_row, a, y, n);
}

}  // namespace st
#endif  // HWY_ONCE
