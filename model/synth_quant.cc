#include "model/synth_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/dtype.h"
#include "kernels/fp16.h"
#include "kernels/ggml_storage.h"
#include "kernels/quant.h"

namespace st {
namespace {

void PutHalf(uint8_t* p, float v) {
  const uint16_t h = F32ToF16(v);
  std::memcpy(p, &h, sizeof(h));
}

int Nearest(float v, int lo, int hi) {
  return std::clamp(static_cast<int>(std::lround(v)), lo, hi);
}

// Q5_0 as ggml's quantize_row_q5_0_ref: d = the signed extreme / -16.
void QuantizeQ5_0(const float* x, uint8_t* dst, size_t n) {
  for (size_t b = 0; b < n / 32; ++b, x += 32, dst += kQ5_0BlockBytes) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
    }
    const float d = max / -16, id = d != 0 ? 1.0f / d : 0.0f;
    PutHalf(dst, d);
    uint32_t qh = 0;
    uint8_t* qs = dst + 6;
    for (int j = 0; j < 16; ++j) {
      const int x0 = std::min(31, static_cast<int>(x[j] * id + 16.5f));
      const int x1 = std::min(31, static_cast<int>(x[j + 16] * id + 16.5f));
      qs[j] = static_cast<uint8_t>((x0 & 0xF) | ((x1 & 0xF) << 4));
      qh |= static_cast<uint32_t>((x0 & 0x10) >> 4) << j;
      qh |= static_cast<uint32_t>((x1 & 0x10) >> 4) << (j + 16);
    }
    std::memcpy(dst + 2, &qh, sizeof(qh));
  }
}

// Q4_K: 8 sub-blocks of 32, each w = d * sc * q - dmin * m, q in [0, 15],
// sc and m 6-bit (packed as ggml's get_scale_min_k4 reads them).
void QuantizeQ4_K(const float* x, uint8_t* dst, size_t n) {
  for (size_t b = 0; b < n / 256; ++b, x += 256, dst += kQ4_KBlockBytes) {
    float scale[8], min[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      const float* s = x + 32 * j;
      const float lo = std::min(0.0f, *std::min_element(s, s + 32));
      const float hi = std::max(0.0f, *std::max_element(s, s + 32));
      scale[j] = (hi - lo) / 15;
      min[j] = -lo;
      max_scale = std::max(max_scale, scale[j]);
      max_min = std::max(max_min, min[j]);
    }
    // The f16 super-scales as stored, so the 6-bit ones are chosen against
    // what the dequantizer multiplies by.
    const float d = F16ToF32(F32ToF16(max_scale / 63)), dmin = F16ToF32(F32ToF16(max_min / 63));
    PutHalf(dst, d);
    PutHalf(dst + 2, dmin);
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = static_cast<uint8_t>(d > 0 ? Nearest(scale[j] / d, 0, 63) : 0);
      m[j] = static_cast<uint8_t>(dmin > 0 ? Nearest(min[j] / dmin, 0, 63) : 0);
    }
    uint8_t* scales = dst + 4;
    std::memset(scales, 0, 12);
    for (int j = 0; j < 8; ++j) {
      if (j < 4) {
        scales[j] = sc[j];
        scales[j + 4] = m[j];
      } else {
        scales[j + 4] = static_cast<uint8_t>((sc[j] & 0xF) | ((m[j] & 0xF) << 4));
        scales[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
        scales[j] |= static_cast<uint8_t>((m[j] >> 4) << 6);
      }
    }
    uint8_t q[256];
    for (int j = 0; j < 8; ++j) {
      const float step = d * sc[j], offset = dmin * m[j];
      for (int l = 0; l < 32; ++l) {
        q[32 * j + l] =
            static_cast<uint8_t>(step > 0 ? Nearest((x[32 * j + l] + offset) / step, 0, 15) : 0);
      }
    }
    uint8_t* qs = dst + 16;
    for (int j = 0; j < 256; j += 64, qs += 32) {
      for (int l = 0; l < 32; ++l) qs[l] = static_cast<uint8_t>(q[j + l] | (q[j + l + 32] << 4));
    }
  }
}

// Q6_K: 16 groups of 16, each w = d * sc * (q - 32), q in [0, 63], sc int8.
void QuantizeQ6_K(const float* x, uint8_t* dst, size_t n) {
  for (size_t b = 0; b < n / 256; ++b, x += 256, dst += kQ6_KBlockBytes) {
    float scale[16], max_scale = 0;
    for (int g = 0; g < 16; ++g) {
      float amax = 0;
      for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[16 * g + l]));
      scale[g] = amax / 31;
      max_scale = std::max(max_scale, scale[g]);
    }
    const float d = F16ToF32(F32ToF16(max_scale / 127));
    auto* sc = reinterpret_cast<int8_t*>(dst + 192);
    uint8_t q[256];
    for (int g = 0; g < 16; ++g) {
      sc[g] = static_cast<int8_t>(d > 0 ? Nearest(scale[g] / d, -128, 127) : 0);
      const float step = d * sc[g];
      for (int l = 0; l < 16; ++l) {
        q[16 * g + l] =
            static_cast<uint8_t>(step > 0 ? Nearest(x[16 * g + l] / step, -32, 31) + 32 : 32);
      }
    }
    PutHalf(dst + 208, d);
    // Two halves of 128: weight l + 32 k (k = 0..3) keeps its low nibble in
    // ql[l] or ql[l + 32] (low half for k = 0, 1; high half for 2, 3) and
    // its top two bits at bits 2k of qh[l] (DequantizeQ6_K reads it so).
    for (int half = 0; half < 2; ++half) {
      uint8_t* ql = dst + 64 * half;
      uint8_t* qh = dst + 128 + 32 * half;
      const uint8_t* h = q + 128 * half;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((h[l] & 0xF) | ((h[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((h[l + 32] & 0xF) | ((h[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((h[l] >> 4) | ((h[l + 32] >> 4) << 2) |
                                     ((h[l + 64] >> 4) << 4) | ((h[l + 96] >> 4) << 6));
      }
    }
  }
}

}  // namespace

size_t SynthRowBytes(uint32_t ggml_type, size_t n) {
  if (absl::StatusOr<DType> t = DTypeFromGgml(ggml_type); t.ok()) return RowBytes(*t, n);
  switch (ggml_type) {
    case kGgmlQ4_K: return n / 256 * kQ4_KBlockBytes;
    case kGgmlQ6_K: return n / 256 * kQ6_KBlockBytes;
    case kGgmlQ5_0: return n / 32 * kQ5_0BlockBytes;
    default: return 0;
  }
}

void SynthQuantizeRow(uint32_t ggml_type, const float* x, uint8_t* dst, size_t n) {
  if (absl::StatusOr<DType> t = DTypeFromGgml(ggml_type); t.ok()) {
    QuantizeRow(*t, x, dst, n);
    return;
  }
  switch (ggml_type) {
    case kGgmlQ4_K: QuantizeQ4_K(x, dst, n); break;
    case kGgmlQ6_K: QuantizeQ6_K(x, dst, n); break;
    case kGgmlQ5_0: QuantizeQ5_0(x, dst, n); break;
    default: break;
  }
}

}  // namespace st
