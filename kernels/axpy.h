// y += a * row, for weight rows of any type (down-transposed experts).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"

namespace st {

// y[j] += a * w[j] for a row of n elements of type `type` (n % BlockElems ==
// 0). SIMD (Highway, dynamic dispatch); the row needs no alignment. For
// quantized rows the product is formed as (a * d) * q per block, so results
// differ from scalar::AxpyRow by float rounding only (bound in axpy_test.cc).
void AxpyRow(DType type, const void* w_row, float a, float* y, size_t n);

// For k < n_rows in order: AxpyRow(type, w + rows[k] * row_bytes + offset,
// a[k], y, n), bit for bit, in one call (AVX-512 Q4_0/Q8_0: the rows in
// L1-sized chunks, and over each chunk column tiles of 256 whose y stays in
// registers, nibbles turned into floats by a 16-entry table lookup); other
// targets and types loop over AxpyRow.
// `offset` is a byte offset into each row (a column range in whole blocks).
void AxpyRows(DType type, const void* w, size_t row_bytes, size_t offset, const uint32_t* rows,
              const float* a, size_t n_rows, float* y, size_t n);

namespace scalar {
// Reference twin: y[j] += a * w[j] with w dequantized as DequantizeRow does.
void AxpyRow(DType type, const void* w_row, float a, float* y, size_t n);
}  // namespace scalar

}  // namespace st
