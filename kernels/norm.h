// RMSNorm.
#pragma once

#include <cstddef>

namespace st {

// y[j] = gain[j] * x[j] / sqrt(mean(x^2) + eps). y may alias x.
// The mean of squares is accumulated in double.
void RmsNorm(const float* x, const float* gain, size_t n, float eps, float* y);

namespace scalar {
void RmsNorm(const float* x, const float* gain, size_t n, float eps, float* y);
}  // namespace scalar

}  // namespace st
