// Q4_0 rows in the split layout, and their dot products with Q8_0 vectors:
// the expert pack's up rows (storage/expert_pack.h, kPackFlagUpSplit), which
// sparse ReGLU dots one active row at a time.
//
// A row of n elements (n % 32 == 0) is its n / 32 fp16 block scales, then
// the blocks' 16 level bytes each (BlockQ4_0::qs), in block order:
// RowBytes(kQ4_0, n) bytes, the same bytes as a plain Q4_0 row, re-ordered.
// The levels of 4 consecutive blocks are then one 64-byte run, so the
// AVX-512 VNNI kernel dots 128 elements with two dpbusd and no byte
// permutes, where the plain layout's 18-byte blocks need three permutes per
// pair of blocks (kernels/dot_q8-inl.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dot.h"

namespace st {

// Plain Q4_0 blocks (n elements) -> one split row, and back. `out` must not
// overlap the input.
void SplitQ4_0Row(const void* blocks, size_t n, void* out);
void JoinQ4_0Row(const void* split, size_t n, void* out);

// y[i * y_stride + rows[k]] = dot(split row rows[k] of w, xs[i]) for k <
// n_rows, i < n_vecs, each within float rounding of scalar::DotRow of the
// joined row (the per-block int32 sums are exact; the bound is
// dot_test.cc's for integer paths). All xs[i].n are equal; rows are
// row_bytes apart. Single-threaded; the listed rows are prefetched ahead.
// With xs[i].q8 set and n % 128 == 0 (4b and 21b widths), AVX-512 VNNI
// runs the kernel described above and AVX2 (also AVX-512 without VNNI) the
// same per 2 blocks (maddubs),
// up to 4 vectors per pass over a row; each vector's result is the same
// whatever vectors and rows share the call. Otherwise the rows are joined
// into a small buffer and dotted by DotRowsMulti.
// kernels_sparse_rows_benchmark (one thread, half the 4b up rows, session
// 24): AVX-512 from L2 12.2 -> 20.2 GiB/s against the plain layout, from
// DRAM 7.8 -> 9.3; AVX2 (ST_BENCH_AVX2=1) from L2 6.8-7.2 -> 10.4-11.0.
void DotRowsIndexedSplitQ4_0(const void* w, size_t row_bytes, const uint32_t* rows,
                             size_t n_rows, const VecRef* xs, size_t n_vecs, float* y,
                             size_t y_stride);

}  // namespace st
