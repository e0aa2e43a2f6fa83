// Q4_0 and Q8_0 weight matrices re-laid in groups of 16 rows ("row-
// interleaved"), for mat-vec and mat-mat kernels that keep 16 rows in the 16
// int32 lanes of one AVX-512 register: per 32-element block, four (Q4_0) or
// eight (Q8_0) 64-byte loads and one VNNI dpbusd per 4 activation bytes give
// the exact integer block sums of all 16 rows at once, so there is no
// horizontal reduction, the weight unpacking is shared by all 16 rows, and
// the activations are broadcast straight from their Q8_0 blocks. This is the
// layout llama.cpp calls "repacked" (its Q4_0_8x8 and friends), ours with 16
// rows to fill a 512-bit register.
//
// Layout of one group (rows 16g .. 16g+15, nb = cols / 32 blocks):
//   scales: nb x 16 fp16 (block b: the 16 rows' d, row order)       32 B each
//   data:   nb x kChunks x 64 B; chunk c of block b holds, for row i
//           (lane i), bytes 4c .. 4c+3 of that row's block b:
//             Q4_0: the qs bytes as stored (low nibbles are elements
//                   4c..4c+3, high nibbles 16+4c..16+4c+3), 4 chunks;
//             Q8_0: qs + 128 as u8 (offset binary), 8 chunks.
// A group has exactly the bytes of its 16 rows, so a packed matrix is as big
// as the original.
//
// Numerics (every target and the scalar twin, bit for bit): per row and block
// the exact int32 sum s = sum_j w_j * x_j (Q4_0: w_j = nibble - 8), then
// acc = fma(float(s), d_w * d_x, acc) over the blocks in order, acc from 0.
// This differs from DotRow's order (which sums partial lanes), so a packed
// matrix gives results within float rounding of the row-major kernels, and
// identical results whatever the thread count or the number of vectors.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/quant.h"

namespace st {

class Activations;
class ThreadPool;

inline constexpr size_t kPackRows = 16;

// Whether a [rows x cols] matrix of `type` can be packed: Q4_0 or Q8_0,
// rows % 16 == 0, cols % 32 == 0, and this CPU has a SIMD kernel for the
// layout (AVX2 or AVX-512 on x86; elsewhere the row-major kernels stay).
bool CanPack(DType type, size_t rows, size_t cols);

// Bytes of one packed 16-row group (== 16 rows of the original).
size_t PackedGroupBytes(DType type, size_t cols);

// Writes the packed form of `rows` rows of row-major `src` (rows % 16 == 0)
// into dst (rows * RowBytes(type, cols) bytes; 64-byte alignment is best).
void PackRows(DType type, const void* src, size_t rows, size_t cols, void* dst);

// y[v * y_stride + r] for every vector v of x and rows r in
// [16 * g_begin, 16 * g_end) of the packed matrix. x must have q8.
// Single-threaded; safe to call from several threads at once.
void PackedMatMulGroups(DType type, const void* packed, size_t cols, const Activations& x,
                        size_t g_begin, size_t g_end, float* y, size_t y_stride);

namespace scalar {
// Plain C++ twin of st::PackedMatMulGroups, bit-identical to it.
void PackedMatMulGroups(DType type, const void* packed, size_t cols, const Activations& x,
                        size_t g_begin, size_t g_end, float* y, size_t y_stride);
}  // namespace scalar

}  // namespace st
