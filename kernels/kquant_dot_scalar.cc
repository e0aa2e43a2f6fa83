// scalar::DotRowKQuant: the reference the SIMD kernels are tested against.
#include <cstring>

#include "kernels/fp16.h"
#include "kernels/ggml_storage.h"
#include "kernels/kquant_dot.h"

namespace st::scalar {
namespace {

float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return F16ToF32(h);
}

float DotQ4_K(const uint8_t* w, const BlockQ8_0* x, size_t n) {
  float sum = 0.0f;
  for (size_t i = 0; i < n / 256; ++i, w += kQ4_KBlockBytes) {
    const float d = Half(w), dmin = Half(w + 2);
    const uint8_t* qs = w + 16;
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, m;
      ScaleMinK4(s, w + 4, &sc, &m);
      const BlockQ8_0& xb = x[i * 8 + s];
      const uint8_t* q = qs + 32 * (s / 2);
      const int shift = s % 2 == 0 ? 0 : 4;
      int32_t qx = 0, xs = 0;
      for (int j = 0; j < 32; ++j) {
        qx += ((q[j] >> shift) & 0xF) * xb.qs[j];
        xs += xb.qs[j];
      }
      sum += F16ToF32(xb.d) * ((d * sc) * static_cast<float>(qx) -
                               (dmin * m) * static_cast<float>(xs));
    }
  }
  return sum;
}

float DotQ6_K(const uint8_t* w, const BlockQ8_0* x, size_t n) {
  float sum = 0.0f;
  for (size_t i = 0; i < n / 256; ++i, w += kQ6_KBlockBytes) {
    const float d = Half(w + 208);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = w + 64 * h;
      const uint8_t* qh = w + 128 + 32 * h;
      const int8_t* sc = reinterpret_cast<const int8_t*>(w + 192) + 8 * h;
      // Block g of this half: weights l = 0..31 of group g (ggml's q1..q4).
      for (int g = 0; g < 4; ++g) {
        const BlockQ8_0& xb = x[i * 8 + 4 * h + g];
        int32_t part[2] = {0, 0};
        for (int l = 0; l < 32; ++l) {
          const int lo = (g % 2 == 0 ? ql[l] : ql[l + 32]) >> (g < 2 ? 0 : 4) & 0xF;
          const int hi = (qh[l] >> (2 * g)) & 3;
          part[l / 16] += ((lo | (hi << 4)) - 32) * xb.qs[l];
        }
        const int32_t qx = sc[2 * g] * part[0] + sc[2 * g + 1] * part[1];
        sum += F16ToF32(xb.d) * d * static_cast<float>(qx);
      }
    }
  }
  return sum;
}

}  // namespace

float DotRowKQuant(uint32_t ggml_type, const void* w_row, const BlockQ8_0* x, size_t n) {
  const auto* w = static_cast<const uint8_t*>(w_row);
  switch (ggml_type) {
    case kGgmlQ4_K: return DotQ4_K(w, x, n);
    case kGgmlQ6_K: return DotQ6_K(w, x, n);
  }
  return 0.0f;
}

}  // namespace st::scalar
