// Q4_K and Q6_K weight rows dotted with Q8_0 activations as they are, with
// no conversion of the weights: the experts of the K-quant files (Q4_K_M,
// Q4_K_S) in their own bytes, where converting them to Q8_0 costs 1.76x the
// file's memory and bandwidth (kernels/ggml_storage.h).
//
// Each 32-weight activation block meets 32 weights of one Q4_K sub-block
// (scale and min) or of two Q6_K sub-blocks (a scale each), so the sums
// are exact integers per block (u8 weight levels x s8 activation levels),
// then scaled in float:
//   Q4_K: d_x * ((d * sc) * sum(q * x) - (dmin * m) * sum(x))
//   Q6_K: d_x * d * (sc_a * sum_a((q - 32) * x) + sc_b * sum_b((q - 32) * x))
// (d * sc and dmin * m are exact in float: 11 + 6 bits). The SIMD kernels
// round the same integer sums in another order (and Q4_K's two terms
// apart: sum(q * x) per lane, the mins' d_x * sum(x) per block), so they
// equal the scalar twin within 1e-6 of sum |w| |x| plus, for Q4_K, twice
// sum |dmin * m| |x|: a block whose weights are all 0 as d * sc * q - dmin
// * m can give a few ulps of its terms, not 0 (kquant_dot_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/quant.h"

namespace st {

// Whether DotRowsKQuant computes rows of this ggml type (kGgmlQ4_K,
// kGgmlQ6_K in kernels/ggml_storage.h).
bool KQuantDotSupported(uint32_t ggml_type);

// xs[i] are Q8_0 activation vectors of n elements (n % 256 == 0). For the
// rows r = rows[k] (k < n_rows; rows null: r = k), row r at w + r *
// row_bytes: y[i * y_stride + r] = dot(row r, xs[i]) for i < n_vecs. On
// x86 each weight super-block is unpacked once for up to 4 vectors; every vector
// gets the operations of n_vecs = 1, so results depend neither on n_vecs
// nor on the row list. Single-threaded; SIMD (Highway, dynamic dispatch).
void DotRowsKQuant(uint32_t ggml_type, const void* w, size_t row_bytes, const uint32_t* rows,
                   size_t n_rows, const BlockQ8_0* const* xs, size_t n_vecs, size_t n, float* y,
                   size_t y_stride);

namespace scalar {
// The plain C++ twin: one row, one vector.
float DotRowKQuant(uint32_t ggml_type, const void* w_row, const BlockQ8_0* x, size_t n);
}  // namespace scalar

}  // namespace st
