// ggml quantization formats the engine reads from GGUF files but computes
// nothing in: a tensor stored in one of them is dequantized and re-quantized
// to Q8_0 (kernels/quant.h) before any kernel reads it. Dense tensors are
// converted when the model loads (model/weights.cc), expert matrices on
// first use (model/mapped_repack.h) or when the expert pack is written
// (storage/pack_writer.cc). Real files need them: llama.cpp's quantizer
// stores the LM head of a Q4_0 file in Q6_K unless told otherwise, and its
// K-quant mixes (Q4_K_M: Q4_K with Q6_K for some ffn_down and attn_v;
// Q3_K_M: Q3_K, Q4_K, Q5_K; ...) are four of the six files SmallThinker's
// QAT release publishes. Q8_0 keeps every weight within about half a Q8_0
// step (1/254 of its block's largest magnitude, plus up to ~12% of a step
// from storing the scale as f16) of the file's value.
#pragma once

#include <cstddef>
#include <cstdint>

namespace st {

struct StorageFormat {
  uint32_t ggml_type;  // ggml's type id
  const char* name;    // ggml's name ("Q6_K")
  size_t block_elems;  // elements per block, a multiple of 32 (whole Q8_0 blocks)
  size_t block_bytes;  // bytes per block
  // dst[0, n) = the n elements at src; n % block_elems == 0.
  void (*dequantize)(const uint8_t* src, float* dst, size_t n);
};

// The format of a storage-only ggml type id, or null (a type the kernels
// take, or one the engine cannot read at all).
const StorageFormat* FindStorageFormat(uint32_t ggml_type);

// rows x cols elements in format f at src -> the same rows as Q8_0 at dst
// (RowBytes(DType::kQ8_0, cols) bytes each): dequantized, then quantized as
// ggml's quantize_row_q8_0_ref does. cols % f.block_elems == 0.
void ConvertRowsToQ8_0(const StorageFormat& f, const void* src, size_t rows, size_t cols,
                       void* dst);

// ggml's type ids and block sizes. Every block is laid out as ggml's
// block_q* struct (ggml-common.h); each dequantizer reproduces ggml's
// dequantize_row_* bit for bit (kernels/ggml_storage_test.cc).
inline constexpr uint32_t kGgmlQ4_1 = 3;   // f16 d, f16 m, 16 B nibbles: d * q + m
inline constexpr uint32_t kGgmlQ5_0 = 6;   // f16 d, u32 high bits, nibbles: d * (q - 16)
inline constexpr uint32_t kGgmlQ5_1 = 7;   // f16 d, f16 m, u32 high bits, nibbles: d * q + m
inline constexpr uint32_t kGgmlQ2_K = 10;  // 16 x (4-bit scale, 4-bit min), 2-bit q, f16 d, dmin
inline constexpr uint32_t kGgmlQ3_K = 11;  // high-bit mask, 2-bit q, 16 6-bit scales, f16 d
inline constexpr uint32_t kGgmlQ4_K = 12;  // f16 d, dmin, 8 x 6-bit (scale, min), 4-bit q
inline constexpr uint32_t kGgmlQ5_K = 13;  // as Q4_K plus a fifth bit per weight
inline constexpr size_t kQ4_1BlockBytes = 20, kQ5_0BlockBytes = 22, kQ5_1BlockBytes = 24;
inline constexpr size_t kQ2_KBlockBytes = 84, kQ3_KBlockBytes = 110, kQ4_KBlockBytes = 144,
                        kQ5_KBlockBytes = 176;
void DequantizeQ4_1(const uint8_t* src, float* dst, size_t n);
void DequantizeQ5_0(const uint8_t* src, float* dst, size_t n);
void DequantizeQ5_1(const uint8_t* src, float* dst, size_t n);
void DequantizeQ2_K(const uint8_t* src, float* dst, size_t n);
void DequantizeQ3_K(const uint8_t* src, float* dst, size_t n);
void DequantizeQ4_K(const uint8_t* src, float* dst, size_t n);
void DequantizeQ5_K(const uint8_t* src, float* dst, size_t n);
// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j (0..7)
// of a Q4_K/Q5_K super-block from its 12 packed bytes (at offset 4).
void ScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m);

// ggml's GGML_TYPE_Q6_K: super-blocks of 256 weights, 210 bytes each:
// ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16] (one per 16
// weights), f16 d; weight = d * scale * (q - 32), q in [0, 64).
inline constexpr uint32_t kGgmlQ6_K = 14;
inline constexpr size_t kQ6_KBlockBytes = 210;
void DequantizeQ6_K(const uint8_t* src, float* dst, size_t n);

}  // namespace st
