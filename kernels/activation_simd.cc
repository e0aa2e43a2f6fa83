// st::ReluMulCount with Highway dispatch: per lane one compare, one multiply
// and a select to +0, plus a count of the compare's true lanes; the tail
// (n % lanes) runs the scalar expression, which gives the same bits.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/activation_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <cstddef>

#include "kernels/activation.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

size_t ReluMulCountT(float* g, const float* u, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  const auto zero = hn::Zero(df);
  size_t on = 0, j = 0;
  for (; j + N <= n; j += N) {
    const auto gv = hn::LoadU(df, g + j);
    const auto pos = hn::Gt(gv, zero);
    on += hn::CountTrue(df, pos);
    hn::StoreU(hn::IfThenElseZero(pos, hn::Mul(gv, hn::LoadU(df, u + j))), df, g + j);
  }
  return on + scalar::ReluMulCount(g + j, u + j, n - j);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(ReluMulCountT);

size_t ReluMulCount(float* g, const float* u, size_t n) {
  return HWY_DYNAMIC_DISPATCH(ReluMulCountT)(g, u, n);
}

}  // namespace st
#endif  // HWY_ONCE
