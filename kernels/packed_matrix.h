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
// Layout of one group (rows 16g .. 16g+15, nb = cols / 32 blocks): the
// blocks in pairs, each pair one contiguous run (the last block alone when nb
// is odd), so a group is a single forward stream of memory:
//   pair p = blocks 2p, 2p+1:  scales(2p) scales(2p+1) data(2p) data(2p+1)
//   scales(b): the 16 rows' fp16 d of block b, row order             32 B
//   data(b):   kChunks x 64 B; chunk c holds, for row i (lane i), bytes
//              4c .. 4c+3 of that row's block b:
//                Q4_0: the qs bytes as stored (low nibbles are elements
//                      4c..4c+3, high nibbles 16+4c..16+4c+3), 4 chunks;
//                Q8_0: qs + 128 as u8 (offset binary), 8 chunks.
// PackedScalesOffset / PackedDataOffset give the byte offsets inside a group.
// A group has exactly the bytes of its 16 rows, so a packed matrix is as big
// as the original. (An earlier layout kept all of a group's scales ahead of
// its data: two streams per group, measurably slower to read from DRAM; an
// expert pack written with it carries a different flag and is refused.)
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

// Bytes of one block's data in a group: kChunks x 64 (Q4_0 256, Q8_0 512).
inline constexpr size_t PackedBlockDataBytes(DType type) {
  return type == DType::kQ4_0 ? 256 : 512;
}
inline constexpr size_t kPackedScaleBytes = 32;  // 16 fp16 per block

// Offsets inside a group of block b's scales and data (nb blocks per row).
inline size_t PackedScalesOffset(size_t b, size_t nb, size_t data_bytes) {
  (void)nb;
  return (b & ~size_t{1}) * (kPackedScaleBytes + data_bytes) + kPackedScaleBytes * (b & 1);
}
inline size_t PackedDataOffset(size_t b, size_t nb, size_t data_bytes) {
  const size_t in_pair = (b | 1) < nb ? 2 : 1;
  return (b & ~size_t{1}) * (kPackedScaleBytes + data_bytes) + kPackedScaleBytes * in_pair +
         data_bytes * (b & 1);
}

// Writes the packed form of `rows` rows of row-major `src` (rows % 16 == 0)
// into dst (rows * RowBytes(type, cols) bytes; 64-byte alignment is best).
void PackRows(DType type, const void* src, size_t rows, size_t cols, void* dst);

// y[(v - v_begin) * y_stride + r] for the vectors v in [v_begin, v_end) of x
// and rows r in [16 * g_begin, 16 * g_end) of the packed matrix. x must
// have q8. Each vector's outputs do not depend on which others are in the
// call. Single-threaded; safe to call from several threads at once.
void PackedMatMulGroups(DType type, const void* packed, size_t cols, const Activations& x,
                        size_t v_begin, size_t v_end, size_t g_begin, size_t g_end, float* y,
                        size_t y_stride);
// Every vector of x.
void PackedMatMulGroups(DType type, const void* packed, size_t cols, const Activations& x,
                        size_t g_begin, size_t g_end, float* y, size_t y_stride);

namespace scalar {
// Plain C++ twin of st::PackedMatMulGroups, bit-identical to it.
void PackedMatMulGroups(DType type, const void* packed, size_t cols, const Activations& x,
                        size_t v_begin, size_t v_end, size_t g_begin, size_t g_end, float* y,
                        size_t y_stride);
void PackedMatMulGroups(DType type, const void* packed, size_t cols, const Activations& x,
                        size_t g_begin, size_t g_end, float* y, size_t y_stride);
}  // namespace scalar

}  // namespace st
