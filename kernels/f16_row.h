// float rows -> IEEE binary16 rows (the F16 KV cache's store), SIMD.
#pragma once

#include <cstddef>
#include <cstdint>

namespace st {

// out[i] = F32ToF16(x[i]) for i < n: round to nearest even, overflow to
// inf, subnormals exact. On AVX2/AVX-512 one F16C instruction per 8/16
// floats (bit-identical to F32ToF16 for every non-NaN float; a NaN stays a
// NaN, its payload kept rather than replaced by 0x7E00); elsewhere the
// scalar loop. x and out need no alignment.
void F32ToF16Row(const float* x, size_t n, uint16_t* out);

}  // namespace st
