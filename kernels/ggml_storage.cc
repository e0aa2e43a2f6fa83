#include "kernels/ggml_storage.h"

#include <cstring>

#include "kernels/fp16.h"

namespace st {

void DequantizeQ6_K(const uint8_t* src, float* dst, size_t n) {
  constexpr size_t kQK = 256;
  for (size_t b = 0; b < n / kQK; ++b) {
    const uint8_t* block = src + b * kQ6_KBlockBytes;
    const uint8_t* ql = block;
    const uint8_t* qh = block + kQK / 2;
    const auto* sc = reinterpret_cast<const int8_t*>(block + kQK / 2 + kQK / 4);
    uint16_t d16;
    std::memcpy(&d16, block + kQK / 2 + kQK / 4 + kQK / 16, sizeof(d16));
    const float d = F16ToF32(d16);
    float* y = dst + b * kQK;
    // Two halves of 128 weights; in each, weight l + 32 * k (k = 0..3) takes
    // its low nibble from ql (low or high half of byte l or l + 32) and its
    // top two bits from bits 2k, 2k + 1 of qh[l]; scale index l / 16 + 2k.
    for (size_t half = 0; half < 2; ++half) {
      for (size_t l = 0; l < 32; ++l) {
        const size_t is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

const StorageFormat* FindStorageFormat(uint32_t ggml_type) {
  static constexpr StorageFormat kFormats[] = {
      {kGgmlQ6_K, "Q6_K", 256, kQ6_KBlockBytes, DequantizeQ6_K},
  };
  for (const StorageFormat& f : kFormats) {
    if (f.ggml_type == ggml_type) return &f;
  }
  return nullptr;
}

}  // namespace st
