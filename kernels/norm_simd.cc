// st::RmsNorm with Highway dispatch. Per target: the sum of squares widens
// float -> double (PromoteTo) and accumulates with two MulAdd accumulators;
// the scaling pass is y = (x * scale) * gain in float lanes, the same float
// operations as scalar::RmsNorm, so outputs differ from the scalar twin only
// if the reordered double sum rounds to a different float scale.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/norm_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <cmath>

#include "kernels/norm.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

void RmsNormT(const float* x, const float* gain, size_t n, float eps, float* y) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> dh;  // as many floats as dd has doubles
  const size_t ND = hn::Lanes(dd);
  auto a0 = hn::Zero(dd), a1 = hn::Zero(dd);
  size_t j = 0;
  for (; j + 2 * ND <= n; j += 2 * ND) {
    const auto v0 = hn::PromoteTo(dd, hn::LoadU(dh, x + j));
    const auto v1 = hn::PromoteTo(dd, hn::LoadU(dh, x + j + ND));
    a0 = hn::MulAdd(v0, v0, a0);
    a1 = hn::MulAdd(v1, v1, a1);
  }
  double sum_sq = 0.0;
  for (; j < n; ++j) sum_sq += static_cast<double>(x[j]) * x[j];
  sum_sq += hn::GetLane(hn::SumOfLanes(dd, hn::Add(a0, a1)));
  const float scale = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps));

  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  const auto vscale = hn::Set(df, scale);
  j = 0;
  for (; j + N <= n; j += N) {
    hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(df, x + j), vscale), hn::LoadU(df, gain + j)), df, y + j);
  }
  for (; j < n; ++j) y[j] = (x[j] * scale) * gain[j];
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(RmsNormT);

void RmsNorm(const float* x, const float* gain, size_t n, float eps, float* y) {
  HWY_DYNAMIC_DISPATCH(RmsNormT)(x, gain, n, eps, y);
}

}  // namespace st
#endif  // HWY_ONCE
