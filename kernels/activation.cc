#include "kernels/activation.h"

namespace st {

void ReGlu(const float* gate, const float* up, float* out, size_t n) {
  // Element-wise, so aliasing out with gate or up is safe. Note max(NaN, 0)
  // is 0 here (the comparison is false), like std::max(0, x) orderings in
  // llama.cpp's relu.
  for (size_t j = 0; j < n; ++j) {
    const float g = gate[j] > 0.0f ? gate[j] : 0.0f;
    out[j] = g * up[j];
  }
}

namespace scalar {

size_t ReluMulCount(float* g, const float* u, size_t n) {
  size_t on = 0;
  for (size_t j = 0; j < n; ++j) {
    on += g[j] > 0.0f;
    g[j] = g[j] > 0.0f ? g[j] * u[j] : 0.0f;
  }
  return on;
}

}  // namespace scalar
}  // namespace st
