// Element-wise activations.
#pragma once

#include <cstddef>

namespace st {

// ReGLU: out[j] = max(gate[j], 0) * up[j]. out may alias gate or up.
void ReGlu(const float* gate, const float* up, float* out, size_t n);

// The experts' z in place: g[j] = g[j] > 0 ? g[j] * u[j] : +0 (exactly zero,
// never -0, where the gate is not positive or NaN), returning how many g[j]
// were positive. SIMD (Highway, dynamic dispatch), bit-identical to the
// scalar expression on every target.
size_t ReluMulCount(float* g, const float* u, size_t n);

namespace scalar {
size_t ReluMulCount(float* g, const float* u, size_t n);
}  // namespace scalar

}  // namespace st
