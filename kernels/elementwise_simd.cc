// st::AddTo / st::AddScaledTo with Highway dispatch: full vectors, then the
// scalar twin for the tail (same operations, so the same bits).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/elementwise_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <cstddef>

#include "kernels/elementwise.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

void AddToT(const float* x, float* y, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Add(hn::LoadU(df, y + i), hn::LoadU(df, x + i)), df, y + i);
  scalar::AddTo(x + i, y + i, n - i);
}

void AddScaledToT(float w, const float* x, float* y, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  const auto vw = hn::Set(df, w);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto p = hn::Mul(vw, hn::LoadU(df, x + i));  // rounded, not fused
    hn::StoreU(hn::Add(hn::LoadU(df, y + i), p), df, y + i);
  }
  scalar::AddScaledTo(w, x + i, y + i, n - i);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(AddToT);
HWY_EXPORT(AddScaledToT);

void AddTo(const float* x, float* y, size_t n) { HWY_DYNAMIC_DISPATCH(AddToT)(x, y, n); }

void AddScaledTo(float w, const float* x, float* y, size_t n) {
  HWY_DYNAMIC_DISPATCH(AddScaledToT)(w, x, y, n);
}

}  // namespace st
#endif  // HWY_ONCE
