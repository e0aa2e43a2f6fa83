// y += a * row, for weight rows of any type (down-transposed experts).
#pragma once

#include <cstddef>

#include "kernels/dtype.h"

namespace st {

// y[j] += a * w[j] for a row of n elements of type `type` (n % BlockElems ==
// 0). SIMD (Highway, dynamic dispatch); the row needs no alignment. For
// quantized rows the product is formed as (a * d) * q per block, so results
// differ from scalar::AxpyRow by float rounding only (bound in axpy_test.cc).
void AxpyRow(DType type, const void* w_row, float a, float* y, size_t n);

namespace scalar {
// Reference twin: y[j] += a * w[j] with w dequantized as DequantizeRow does.
void AxpyRow(DType type, const void* w_row, float a, float* y, size_t n);
}  // namespace scalar

}  // namespace st
