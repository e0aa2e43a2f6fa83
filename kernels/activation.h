// Element-wise activations.
#pragma once

#include <cstddef>

namespace st {

// ReGLU: out[j] = max(gate[j], 0) * up[j]. out may alias gate or up.
void ReGlu(const float* gate, const float* up, float* out, size_t n);

}  // namespace st
