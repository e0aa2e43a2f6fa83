#include "kernels/ggml_storage.h"

#include <cstring>

#include <vector>

#include "kernels/fp16.h"
#include "kernels/quant.h"

namespace st {

namespace {

float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof(h));
  return F16ToF32(h);
}

}  // namespace

void ScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void DequantizeQ4_1(const uint8_t* src, float* dst, size_t n) {
  for (size_t b = 0; b < n / 32; ++b, src += kQ4_1BlockBytes, dst += 32) {
    const float d = HalfAt(src), m = HalfAt(src + 2);
    const uint8_t* qs = src + 4;
    for (int j = 0; j < 16; ++j) {
      dst[j] = static_cast<float>(qs[j] & 0xF) * d + m;
      dst[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
    }
  }
}

namespace {

// Q5_0 and Q5_1: the fifth bit of weight j (and j + 16) is bit j (j + 16)
// of the little-endian u32 qh.
template <bool kWithMin>
void DequantizeQ5(const uint8_t* src, float* dst, size_t n, size_t block_bytes) {
  for (size_t b = 0; b < n / 32; ++b, src += block_bytes, dst += 32) {
    const float d = HalfAt(src), m = kWithMin ? HalfAt(src + 2) : 0.0f;
    const uint8_t* p = src + (kWithMin ? 4 : 2);
    uint32_t qh;
    std::memcpy(&qh, p, sizeof(qh));
    const uint8_t* qs = p + 4;
    for (int j = 0; j < 16; ++j) {
      const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
      int x0 = (qs[j] & 0xF) | h0, x1 = (qs[j] >> 4) | h1;
      if constexpr (kWithMin) {
        dst[j] = static_cast<float>(x0) * d + m;
        dst[j + 16] = static_cast<float>(x1) * d + m;
      } else {
        dst[j] = static_cast<float>(x0 - 16) * d;
        dst[j + 16] = static_cast<float>(x1 - 16) * d;
      }
    }
  }
}

}  // namespace

void DequantizeQ5_0(const uint8_t* src, float* dst, size_t n) {
  DequantizeQ5<false>(src, dst, n, kQ5_0BlockBytes);
}

void DequantizeQ5_1(const uint8_t* src, float* dst, size_t n) {
  DequantizeQ5<true>(src, dst, n, kQ5_1BlockBytes);
}

void DequantizeQ2_K(const uint8_t* src, float* dst, size_t n) {
  for (size_t b = 0; b < n / 256; ++b, src += kQ2_KBlockBytes) {
    const uint8_t* scales = src;
    const uint8_t* q = src + 16;
    const float d = HalfAt(src + 80), min = HalfAt(src + 82);
    int is = 0;
    // Two halves of 128 weights; in each, 16-weight groups take 2 bits at
    // `shift` of q[l] (or q[l + 16]), each group its own 4-bit scale and min.
    for (int half = 0; half < 2; ++half, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int g = 0; g < 2; ++g) {
          const uint8_t sc = scales[is++];
          const float dl = d * static_cast<float>(sc & 0xF), ml = min * static_cast<float>(sc >> 4);
          for (int l = 0; l < 16; ++l) {
            *dst++ = dl * static_cast<float>((q[l + 16 * g] >> shift) & 3) - ml;
          }
        }
      }
    }
  }
}

void DequantizeQ3_K(const uint8_t* src, float* dst, size_t n) {
  constexpr uint32_t kMask1 = 0x03030303, kMask2 = 0x0f0f0f0f;
  for (size_t b = 0; b < n / 256; ++b, src += kQ3_KBlockBytes) {
    const uint8_t* hm = src;
    const uint8_t* q = src + 32;
    // 16 6-bit scales, biased by 32: low 4 bits in bytes 0-7, high 2 bits
    // in bytes 8-11 (ggml's unpacking, on little-endian words).
    uint32_t aux[4];
    std::memcpy(aux, src + 96, 12);
    const uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kMask2) | (((tmp >> 4) & kMask1) << 4);
    aux[3] = ((aux[1] >> 4) & kMask2) | (((tmp >> 6) & kMask1) << 4);
    aux[0] = (aux[0] & kMask2) | (((tmp >> 0) & kMask1) << 4);
    aux[1] = (aux[1] & kMask2) | (((tmp >> 2) & kMask1) << 4);
    int8_t scales[16];
    std::memcpy(scales, aux, 16);
    const float d_all = HalfAt(src + 108);
    int is = 0;
    uint8_t m = 1;
    for (int half = 0; half < 2; ++half, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
        for (int g = 0; g < 2; ++g) {
          const float dl = d_all * static_cast<float>(scales[is++] - 32);
          for (int l = 16 * g; l < 16 * g + 16; ++l) {
            const int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
            *dst++ = dl * static_cast<float>(v);
          }
        }
      }
    }
  }
}

namespace {

// Q4_K and Q5_K: 8 sub-blocks of 32 weights, each with a 6-bit scale and
// min; weight = d * scale * q - dmin * min. Q5_K adds a fifth bit from qh.
template <bool kFiveBits>
void DequantizeQ45_K(const uint8_t* src, float* dst, size_t n, size_t block_bytes) {
  for (size_t b = 0; b < n / 256; ++b, src += block_bytes) {
    const float d = HalfAt(src), min = HalfAt(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* qh = src + 16;  // Q5_K only
    const uint8_t* ql = src + (kFiveBits ? 48 : 16);
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
      uint8_t sc, m;
      ScaleMinK4(is, scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
      ScaleMinK4(is + 1, scales, &sc, &m);
      const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        const int hi = kFiveBits && (qh[l] & u1) ? 16 : 0;
        *dst++ = d1 * static_cast<float>((ql[l] & 0xF) + hi) - m1;
      }
      for (int l = 0; l < 32; ++l) {
        const int hi = kFiveBits && (qh[l] & u2) ? 16 : 0;
        *dst++ = d2 * static_cast<float>((ql[l] >> 4) + hi) - m2;
      }
    }
  }
}

}  // namespace

void DequantizeQ4_K(const uint8_t* src, float* dst, size_t n) {
  DequantizeQ45_K<false>(src, dst, n, kQ4_KBlockBytes);
}

void DequantizeQ5_K(const uint8_t* src, float* dst, size_t n) {
  DequantizeQ45_K<true>(src, dst, n, kQ5_KBlockBytes);
}

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

void ConvertRowsToQ8_0(const StorageFormat& f, const void* src, size_t rows, size_t cols,
                       void* dst) {
  const size_t in_row = cols / f.block_elems * f.block_bytes;
  const size_t out_row = RowBytes(DType::kQ8_0, cols);
  std::vector<float> row(cols), scales(cols / 32);
  std::vector<int32_t> sums(cols / 32);
  for (size_t r = 0; r < rows; ++r) {
    f.dequantize(static_cast<const uint8_t*>(src) + r * in_row, row.data(), cols);
    // QuantizeRow(kQ8_0)'s blocks bit for bit, with SIMD (a K-quant model's
    // experts are billions of weights).
    QuantizeQ8_0Blocks(row.data(), cols,
                       reinterpret_cast<BlockQ8_0*>(static_cast<uint8_t*>(dst) + r * out_row),
                       scales.data(), sums.data());
  }
}

const StorageFormat* FindStorageFormat(uint32_t ggml_type) {
  static constexpr StorageFormat kFormats[] = {
      {kGgmlQ4_1, "Q4_1", 32, kQ4_1BlockBytes, DequantizeQ4_1},
      {kGgmlQ5_0, "Q5_0", 32, kQ5_0BlockBytes, DequantizeQ5_0},
      {kGgmlQ5_1, "Q5_1", 32, kQ5_1BlockBytes, DequantizeQ5_1},
      {kGgmlQ2_K, "Q2_K", 256, kQ2_KBlockBytes, DequantizeQ2_K},
      {kGgmlQ3_K, "Q3_K", 256, kQ3_KBlockBytes, DequantizeQ3_K},
      {kGgmlQ4_K, "Q4_K", 256, kQ4_KBlockBytes, DequantizeQ4_K},
      {kGgmlQ5_K, "Q5_K", 256, kQ5_KBlockBytes, DequantizeQ5_K},
      {kGgmlQ6_K, "Q6_K", 256, kQ6_KBlockBytes, DequantizeQ6_K},
  };
  for (const StorageFormat& f : kFormats) {
    if (f.ggml_type == ggml_type) return &f;
  }
  return nullptr;
}

}  // namespace st
