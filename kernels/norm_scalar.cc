#include <cmath>

#include "kernels/norm.h"

namespace st::scalar {

void RmsNorm(const float* x, const float* gain, size_t n, float eps, float* y) {
  double sum_sq = 0.0;
  for (size_t j = 0; j < n; ++j) sum_sq += static_cast<double>(x[j]) * x[j];
  // Same float operations as st::RmsNorm: y = (x * scale) * gain.
  const float scale = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps));
  for (size_t j = 0; j < n; ++j) y[j] = (x[j] * scale) * gain[j];
}

}  // namespace st::scalar
