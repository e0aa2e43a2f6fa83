// y += a * row, for weight rows of any type (down-transposed experts).
#pragma once

#include <cstddef>

#include "kernels/dtype.h"

namespace st {

// y[j] += a * w[j] for a row of n elements of type `type`.
void AxpyRow(DType type, const void* w_row, float a, float* y, size_t n);

}  // namespace st
