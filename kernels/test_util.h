// Helpers shared by the kernels/ tests (header-only, test code only).
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/targets.h"

namespace st::testing {

// n samples of N(0, stddev^2) from a fixed-seed generator.
inline std::vector<float> Gaussian(size_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// Runs body() once for every Highway target that is both compiled into the
// library and supported by this CPU, with dynamic dispatch forced to it, so
// every SIMD path (not only the best one) is compared with its scalar twin.
template <class Body>
void ForEachTarget(Body body) {
  hwy::SetSupportedTargetsForTest(0);
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  for (int64_t target : targets) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
}

}  // namespace st::testing
