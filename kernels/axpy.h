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

// y += sum over k < n_rows of a[k] * (w + rows[k] * row_bytes + offset),
// one row of n elements each. `offset` is a byte offset into each row (a
// column range in whole blocks).
//  - Q4_0 where AxpyRowsGrouped(type) (AVX-512 with VNNI and VBMI): int8
//    products, bit for bit as scalar::AxpyRowsGroupedQ4_0. The listed rows,
//    in order, form groups of 4 (the last padded with coefficient 0); per
//    group and block the coefficients c = a[k] * d (d the row's block
//    scale) become int8 levels q = round(c * (127 / m)), m = max |c| over
//    the group, and each element adds m * (1 / 127) * (sum over the 4 rows
//    of q * (level - 8)), the sum exact in int32: one dpbusd per 16 columns
//    of 4 rows instead of 4 float FMAs. A coefficient is off by at most
//    about m / 254, what quantizing z to Q8_0 costs the dense (GGUF) down.
//    Results do not depend on how the columns are split into calls, but do
//    on the exact row list (it sets the groups): splitting a list over
//    calls or adding rows with coefficient 0 changes them.
//  - Otherwise AxpyRow row after row, bit for bit.
void AxpyRows(DType type, const void* w, size_t row_bytes, size_t offset, const uint32_t* rows,
              const float* a, size_t n_rows, float* y, size_t n);

// In the grouped path a block whose largest |c| in a group is below this
// counts as zero (127 / m would overflow); a NaN or infinite c makes the
// block's elements NaN.
inline constexpr float kGroupedMinMax = 0x1p-120f;

// Whether AxpyRows takes the grouped int8 path for `type` on this CPU.
bool AxpyRowsGrouped(DType type);

namespace scalar {
// Reference twin: y[j] += a * w[j] with w dequantized as DequantizeRow does.
void AxpyRow(DType type, const void* w_row, float a, float* y, size_t n);
// Reference twin of the grouped int8 Q4_0 AxpyRows.
void AxpyRowsGroupedQ4_0(const void* w, size_t row_bytes, size_t offset, const uint32_t* rows,
                         const float* a, size_t n_rows, float* y, size_t n);
}  // namespace scalar

}  // namespace st
