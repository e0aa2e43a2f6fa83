// Block formats of the legacy ggml quantizations and row (de)quantization.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"

namespace st {

inline constexpr size_t kQK = 32;  // elements per Q4_0 / Q8_0 block

// Q4_0: value[j] = (nibble[j] - 8) * d. qs[i] holds element i in its low
// nibble and element i + 16 in its high nibble (ggml layout).
struct BlockQ4_0 {
  uint16_t d;  // fp16 scale
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

// Q8_0: value[j] = qs[j] * d.
struct BlockQ8_0 {
  uint16_t d;  // fp16 scale
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0) == 34);

// Converts n floats to a row of `type` (F32 copy, F16/BF16 round-to-nearest-
// even, Q4_0/Q8_0 as ggml's reference quantizers do). n % BlockElems(type) == 0.
// dst/src need no alignment. Q8_0 output levels are within [-127, 127] (the
// integer dot kernels rely on this for activations).
void QuantizeRow(DType type, const float* x, void* dst, size_t n);

// Q8_0 blocks of n floats (n % 32 == 0), plus each block's scale as float
// and the sum of its levels (what the packed kernels consume): the blocks
// are QuantizeRow(kQ8_0)'s bit for bit, computed with SIMD (the activation
// quantization every quantized mat-vec starts with).
void QuantizeQ8_0Blocks(const float* x, size_t n, BlockQ8_0* dst, float* scales, int32_t* sums);

namespace scalar {
// Reference twin of st::QuantizeQ8_0Blocks: QuantizeRow, then the sums.
void QuantizeQ8_0Blocks(const float* x, size_t n, BlockQ8_0* dst, float* scales, int32_t* sums);
}  // namespace scalar

// Inverse of QuantizeRow for every type.
void DequantizeRow(DType type, const void* src, float* y, size_t n);

}  // namespace st
