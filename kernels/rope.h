// Rotary position embedding, NeoX ("rotate half") convention.
#pragma once

#include <cstdint>

namespace st {

// Rotates each of the n_heads vectors of head_dim floats in x (head-major,
// x[h * head_dim + d]) by position `pos`:
//   inv_freq[j] = theta^(-2j / head_dim), phi = pos * inv_freq[j] (in double)
//   y[j]      = x[j] cos phi - x[j + head_dim/2] sin phi
//   y[j + hd/2] = x[j + hd/2] cos phi + x[j] sin phi,   j < head_dim / 2.
void RopeNeox(float* x, int n_heads, int head_dim, int64_t pos, double theta);

}  // namespace st
