// For the kernel benchmarks: ST_BENCH_AVX2=1 in the environment disables the
// AVX-512 targets before any kernel is dispatched, so an AVX-512 machine
// measures the AVX2 kernels most x86 desktops run; benchmark labels carry
// BenchTargetSuffix() so the output says which.
#pragma once

#include <cstdlib>

#include "hwy/targets.h"

namespace st {

inline const bool kBenchAvx2Only = [] {
  const bool avx2 = std::getenv("ST_BENCH_AVX2") != nullptr;
  if (avx2) hwy::DisableTargets(HWY_AVX3 | HWY_AVX3_DL);
  return avx2;
}();

inline const char* BenchTargetSuffix() { return kBenchAvx2Only ? ", AVX2 only" : ""; }

}  // namespace st
