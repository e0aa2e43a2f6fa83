// Element-wise float sums on the residual stream: y += x, and the experts'
// weighted combine y = y + w * x (the product rounded, then the sum: not a
// fused multiply-add, so every target and the scalar twin give the same
// bits). SIMD (Highway, dynamic dispatch); no alignment needed; x and y must
// not overlap unless equal.
#pragma once

#include <cstddef>

namespace st {

// y[i] = y[i] + x[i].
void AddTo(const float* x, float* y, size_t n);
// y[i] = y[i] + (w * x[i]).
void AddScaledTo(float w, const float* x, float* y, size_t n);

namespace scalar {
void AddTo(const float* x, float* y, size_t n);
void AddScaledTo(float w, const float* x, float* y, size_t n);
}  // namespace scalar

}  // namespace st
