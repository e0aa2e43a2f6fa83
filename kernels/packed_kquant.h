// Q4_K and Q6_K weight matrices re-laid in groups of 16 rows, as
// packed_matrix.h does for Q4_0/Q8_0: the 16 rows sit in the 16 int32 lanes
// of one AVX-512 register (two AVX2 ones), so per 32-weight sub-block eight 64-byte chunks
// and eight VNNI dpbusd give the exact integer sums of all 16 rows, the
// level unpacking and the scale arithmetic are shared by the 16 rows (and
// by up to 8 activation vectors), and no horizontal sum is left. The row
// kernel (kquant_dot.h) spends per row and sub-block what this spends per
// 16 rows.
//
// A group (rows 16g .. 16g+15) is its super-blocks in order (nsb = cols /
// 256), each exactly the bytes of the 16 rows' super-blocks. Q4_K (16 x
// 144 = 2304 bytes):
//   0     d      16 x f16, row order                                  32 B
//   32    dmin   16 x f16                                             32 B
//   64    scales 3 x 64 B: part k holds, for row r (lane r), bytes
//                4k..4k+3 of that row's 12 packed 6-bit scale/min bytes 192 B
//   256   qs     32 chunks x 64 B: chunk 8c + t holds, for row r, bytes
//                32c + 4t .. 32c + 4t + 3 of its 128 qs bytes (low
//                nibbles: weights 4t.. of sub-block 2c, high nibbles: of
//                sub-block 2c + 1)                                    2048 B
// Q6_K (16 x 210 = 3360 bytes):
//   0     d      16 x f16                                             32 B
//   32    scales 16 x 16 B: part j holds int8 scale j of rows 0..15   256 B
//   288   ql     32 chunks x 64 B: chunk t holds, for row r, ql bytes
//                4t .. 4t + 3                                         2048 B
//   2336  qh     16 chunks x 64 B: chunk u holds qh bytes 4u .. 4u + 3 1024 B
//   (ggml's layout: weight 32g + l of half h, g < 4, l < 32, has its low 4
//   bits in ql[64h + 32 (g % 2) + l] (high nibble when g >= 2) and its top
//   2 in bits 2g of qh[32h + l]; level q - 32, scale 8h + 2g + l / 16.)
//
// Numerics (every target and the scalar twin, bit for bit): per row, acc
// from 0; per 32-weight sub-block j of super-block i in order (activation
// block b = 8i + j, with level sum s_b and scale d_x):
//   Q4_K: acc = fma(float(sum_l q_l x_l), (d * sc_j) * d_x, acc)
//         acc = fma(dmin * m_j, -(d_x * float(s_b)), acc)
//   Q6_K: for its 16-weight halves k = 0, 1 (scale sc_k):
//         acc = fma(float(sum_l (q_l - 32) x_l), (d * sc_k) * d_x, acc)
// (the integer sums exact; d * sc and dmin * m exact in float). This rounds
// otherwise than DotRowsKQuant, so the two agree within float rounding
// only; a matrix gives identical results whatever the thread count or the
// number of vectors.
#pragma once

#include <cstddef>
#include <cstdint>

namespace st {

class Activations;

inline constexpr size_t kPackedKQuantRows = 16;
// Offsets inside a group's super-block (above).
inline constexpr size_t kPackedQ4_KScales = 64, kPackedQ4_KLevels = 256;
inline constexpr size_t kPackedQ6_KScales = 32, kPackedQ6_KLow = 288, kPackedQ6_KHigh = 2336;

// Whether a [rows x cols] matrix of ggml type `ggml_type` has the layout's
// shape: Q4_K or Q6_K, rows % 16 == 0, cols % 256 == 0 (what an expert pack stores
// packed, whatever CPU reads it: without the AVX2/AVX-512 kernel, the scalar
// twin computes it).
bool PackableKQuantShape(uint32_t ggml_type, size_t rows, size_t cols);
// PackableKQuantShape, and this CPU has the AVX2 or AVX-512 kernel: what matrices in
// RAM are packed for (elsewhere the row kernels stay).
bool CanPackKQuant(uint32_t ggml_type, size_t rows, size_t cols);
// Whether this CPU runs the packed kernels at all (CanPackKQuant of any
// packable shape): dense K-quants are computed as stored by default, and
// as-stored expert packs are written and read in the packed layout, here.
bool PackedKQuantKernelsHere();

// Bytes of one packed 16-row group (== 16 rows of the original).
size_t PackedKQuantGroupBytes(uint32_t ggml_type, size_t cols);

// Writes the packed form of `rows` rows (rows % 16 == 0) of the row-major
// ggml matrix `src` into dst (the same number of bytes).
void PackKQuantRows(uint32_t ggml_type, const void* src, size_t rows, size_t cols, void* dst);

// y[(v - v_begin) * y_stride + r] for the vectors v in [v_begin, v_end) of x
// (with Q8_0 blocks) and rows r in [16 * g_begin, 16 * g_end). Each vector's
// outputs do not depend on which others are in the call. Single-threaded;
// safe to call from several threads at once.
void PackedKQuantMatMulGroups(uint32_t ggml_type, const void* packed, size_t cols,
                              const Activations& x, size_t v_begin, size_t v_end, size_t g_begin,
                              size_t g_end, float* y, size_t y_stride);

namespace scalar {
// Plain C++ twin of st::PackedKQuantMatMulGroups, bit-identical to it.
void PackedKQuantMatMulGroups(uint32_t ggml_type, const void* packed, size_t cols,
                              const Activations& x, size_t v_begin, size_t v_end, size_t g_begin,
                              size_t g_end, float* y, size_t y_stride);
}  // namespace scalar

}  // namespace st
