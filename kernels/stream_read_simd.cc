// st::StreamReadSum with Highway dispatch: full-width unaligned loads into
// four independent integer accumulators, so memory, not the core, bounds it.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/stream_read_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <cstring>

#include "kernels/memory_bandwidth.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

uint64_t StreamReadSumT(const uint64_t* p, size_t n) {
  const hn::ScalableTag<uint64_t> d;
  const size_t N = hn::Lanes(d);
  auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    a0 = hn::Add(a0, hn::LoadU(d, p + i));
    a1 = hn::Add(a1, hn::LoadU(d, p + i + N));
    a2 = hn::Add(a2, hn::LoadU(d, p + i + 2 * N));
    a3 = hn::Add(a3, hn::LoadU(d, p + i + 3 * N));
  }
  // Lanes summed in uint64_t (wrapping, defined): Highway 1.0.3's AVX3
  // SumOfLanes uses _mm512_reduce_add_epi64, a signed add that UBSan flags.
  HWY_ALIGN uint64_t lanes[HWY_MAX_BYTES / sizeof(uint64_t)];
  hn::Store(hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)), d, lanes);
  uint64_t s = 0;
  for (size_t l = 0; l < N; ++l) s += lanes[l];
  for (; i < n; ++i) s += p[i];
  return s;
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(StreamReadSumT);

uint64_t StreamReadSum(const uint64_t* p, size_t n) {
  return HWY_DYNAMIC_DISPATCH(StreamReadSumT)(p, n);
}

}  // namespace st
#endif  // HWY_ONCE
