// Dot products of one weight row with one activation vector, per weight type.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/quant.h"

namespace st {

// One activation vector prepared for dot products. `f32` is always set; `q8`
// is set (n / 32 blocks) when the vector was quantized for Q4_0/Q8_0 weights,
// in which case quantized weights use integer dot products against it
// (as llama.cpp does); otherwise they are dotted against f32. q8 levels must
// be within [-127, 127] (true for QuantizeRow output): the AVX2 and AVX3
// integer kernels (maddubs) are exact only then. Weight rows need no alignment.
struct VecRef {
  const float* f32 = nullptr;
  const BlockQ8_0* q8 = nullptr;
  size_t n = 0;
};

// sum_j w[j] * x[j] for a row of n = x.n elements of type `wtype`.
// SIMD (Highway, dynamic dispatch). Equals scalar::DotRow within the bounds
// stated in dot_test.cc.
float DotRow(DType wtype, const void* w_row, const VecRef& x);

// y[r] = DotRow(wtype, w + r * row_bytes, x) for r < n_rows: one dispatch for
// a run of rows (used by MatMul). Single-threaded.
void DotRows(DType wtype, const void* w, size_t row_bytes, size_t n_rows, const VecRef& x,
             float* y);

// y[i * y_stride + r] = DotRow(wtype, w + r * row_bytes, xs[i]) for r < n_rows
// and i < n_vecs, bit-identical to DotRow. When wtype is Q4_0/Q8_0 and every
// xs[i] has q8, each weight block is loaded and unpacked once for up to 4
// vectors (prefill, experts with several tokens). All xs[i].n are equal.
// Single-threaded; safe to call from several threads at once (the AVX-512
// path lays the vectors out in a per-thread scratch buffer, 3 bytes per
// element per vector, grown on demand and kept).
void DotRowsMulti(DType wtype, const void* w, size_t row_bytes, size_t n_rows, const VecRef* xs,
                  size_t n_vecs, float* y, size_t y_stride);

// DotRowsMulti over the rows rows[0..n_rows) of w (any increasing or not
// order): y[i * y_stride + rows[k]] = DotRow(wtype, w + rows[k] * row_bytes,
// xs[i]), bit-identical to DotRow. The vectors are prepared once per call and
// the listed rows are prefetched ahead (sparse ReGLU's active up rows).
void DotRowsIndexed(DType wtype, const void* w, size_t row_bytes, const uint32_t* rows,
                    size_t n_rows, const VecRef* xs, size_t n_vecs, float* y, size_t y_stride);

namespace scalar {
// Plain C++ reference twin of st::DotRow.
float DotRow(DType wtype, const void* w_row, const VecRef& x);
}  // namespace scalar

}  // namespace st
