// Scalar twins of kernels/elementwise.h, compiled with -ffp-contract=off
// (kernels/CMakeLists.txt) so no target fuses the product and the sum.
#include "kernels/elementwise.h"

namespace st::scalar {

void AddTo(const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = y[i] + x[i];
}

void AddScaledTo(float w, const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float p = w * x[i];
    y[i] = y[i] + p;
  }
}

}  // namespace st::scalar
