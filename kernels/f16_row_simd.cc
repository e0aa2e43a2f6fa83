// st::F32ToF16Row with Highway dispatch (see f16_row.h). Highway's DemoteTo
// to float16 is F16C's vcvtps2ph (round to nearest even) on AVX2 and
// AVX-512; on SSE4 and below it truncates the mantissa, so those targets
// keep the scalar twin.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/f16_row_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <cstddef>
#include <cstdint>

#include "kernels/f16_row.h"
#include "kernels/fp16.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

void F32ToF16RowT(const float* x, size_t n, uint16_t* out) {
  size_t i = 0;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const size_t N = hn::Lanes(df);
  auto* h = reinterpret_cast<hwy::float16_t*>(out);
  for (; i + N <= n; i += N) hn::StoreU(hn::DemoteTo(dh, hn::LoadU(df, x + i)), dh, h + i);
#endif
  for (; i < n; ++i) out[i] = F32ToF16(x[i]);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(F32ToF16RowT);

void F32ToF16Row(const float* x, size_t n, uint16_t* out) {
  HWY_DYNAMIC_DISPATCH(F32ToF16RowT)(x, n, out);
}

}  // namespace st
#endif  // HWY_ONCE
