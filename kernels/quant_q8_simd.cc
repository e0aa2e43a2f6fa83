// st::QuantizeQ8_0Blocks with Highway dispatch: activations to Q8_0, the
// step every quantized mat-vec starts with (several times per layer in
// decode, on the calling thread). Bit-identical to QuantizeRow(kQ8_0), the
// ggml reference: the same float operations per element (|x| max ignoring
// NaN, d = amax / 127, id = 1 / d, round-half-away(clamp(x * id)), NaN -> 0),
// only lane-parallel; rounding is spelled out (trunc, then +-1 where the
// dropped fraction is >= 0.5, all exact for |v| <= 127) instead of roundf.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/quant_q8_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <cstring>

#include "kernels/fp16.h"
#include "kernels/quant.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

void QuantizeQ8_0BlocksT(const float* x, size_t n, BlockQ8_0* dst, float* scales,
                         int32_t* sums) {
  const hn::CappedTag<float, kQK> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<int8_t, decltype(di)> d8;
  const size_t N = hn::Lanes(df);
  const auto zero = hn::Zero(df), half = hn::Set(df, 0.5f), one = hn::Set(df, 1.0f);
  const auto lo = hn::Set(df, -127.0f), hi = hn::Set(df, 127.0f);
  for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
    auto vmax = zero;
    for (size_t j = 0; j < kQK; j += N) {
      const auto v = hn::LoadU(df, x + j);
      vmax = hn::Max(vmax, hn::IfThenZeroElse(hn::IsNaN(v), hn::Abs(v)));  // std::max skips NaN
    }
    const float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ8_0 y;
    y.d = F32ToF16(d);
    const auto vid = hn::Set(df, id);
    auto vsum = zero;
    for (size_t j = 0; j < kQK; j += N) {
      const auto v = hn::Mul(hn::LoadU(df, x + j), vid);
      const auto c = hn::Min(hn::Max(v, lo), hi);        // exact clamp for non-NaN v
      const auto t = hn::Trunc(c);
      const auto away = hn::Ge(hn::Abs(hn::Sub(c, t)), half);
      auto r = hn::IfThenElse(away, hn::Add(t, hn::CopySign(one, c)), t);
      r = hn::IfThenZeroElse(hn::IsNaN(v), r);           // NaN -> 0, as the reference
      vsum = hn::Add(vsum, r);                           // small integers: exact
      hn::StoreU(hn::DemoteTo(d8, hn::ConvertTo(di, r)), d8, y.qs + j);
    }
    std::memcpy(dst + b, &y, sizeof(y));
    scales[b] = F16ToF32(y.d);
    sums[b] = static_cast<int32_t>(hn::GetLane(hn::SumOfLanes(df, vsum)));
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(QuantizeQ8_0BlocksT);

void QuantizeQ8_0Blocks(const float* x, size_t n, BlockQ8_0* dst, float* scales, int32_t* sums) {
  HWY_DYNAMIC_DISPATCH(QuantizeQ8_0BlocksT)(x, n, dst, scales, sums);
}

namespace scalar {

void QuantizeQ8_0Blocks(const float* x, size_t n, BlockQ8_0* dst, float* scales, int32_t* sums) {
  QuantizeRow(DType::kQ8_0, x, dst, n);
  for (size_t b = 0; b < n / kQK; ++b) {
    scales[b] = F16ToF32(dst[b].d);
    int32_t sum = 0;
    for (int8_t q : dst[b].qs) sum += q;
    sums[b] = sum;
  }
}

}  // namespace scalar
}  // namespace st
#endif  // HWY_ONCE
