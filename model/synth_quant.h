// Quantizers for the ggml storage formats that synthetic models use to
// imitate llama.cpp's K-quant mixes (model/synth.h SynthMix). Plain
// round-to-nearest with per-block scales: valid blocks that the engine's
// dequantizers (kernels/ggml_storage.h) and ggml's read alike, not ggml's
// error-minimizing search (a synthetic model's weights are noise anyway).
#pragma once

#include <cstddef>
#include <cstdint>

namespace st {

// Bytes of a row of n elements of a ggml type id the engine computes in
// (kernels/dtype.h) or one of Q4_K, Q6_K, Q5_0; 0 for any other.
size_t SynthRowBytes(uint32_t ggml_type, size_t n);

// dst <- x[0, n) in that type; n a multiple of its block (256 for Q4_K and
// Q6_K, 32 for Q5_0).
void SynthQuantizeRow(uint32_t ggml_type, const float* x, uint8_t* dst, size_t n);

}  // namespace st
