// ggml quantization formats the engine reads from GGUF files but computes
// nothing in: a tensor stored in one of them is dequantized and converted
// to a type the kernels take when the model loads (model/weights.cc), so no
// kernel ever sees it. Q6_K is the one real files need: llama.cpp's
// quantizer stores the LM head (and a tied embedding) of Q4_0, Q4_1, Q5_0
// and Q5_1 models in Q6_K unless told otherwise (`--pure`,
// `--output-tensor-type`), so without it a plain `llama-quantize ... Q4_0`
// file could not be loaded.
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

// ggml's GGML_TYPE_Q6_K: super-blocks of 256 weights, 210 bytes each:
// ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16] (one per 16
// weights), f16 d; weight = d * scale * (q - 32), q in [0, 64).
inline constexpr uint32_t kGgmlQ6_K = 14;
inline constexpr size_t kQ6_KBlockBytes = 210;
void DequantizeQ6_K(const uint8_t* src, float* dst, size_t n);

}  // namespace st
