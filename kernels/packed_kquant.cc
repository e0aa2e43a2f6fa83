// Packing into the 16-row Q4_K / Q6_K layouts and the scalar twin of their
// kernel (layouts and numerics in packed_kquant.h).
#include "kernels/packed_kquant.h"

#include <cmath>
#include <cstring>

#include "glog/logging.h"
#include "kernels/fp16.h"
#include "kernels/ggml_storage.h"
#include "kernels/matmul.h"

namespace st {
namespace {

constexpr size_t kSuperBlock = 256, kChunkBytes = 64;

size_t BlockBytes(uint32_t ggml_type) {
  CHECK(ggml_type == kGgmlQ4_K || ggml_type == kGgmlQ6_K) << "packed K-quant: Q4_K or Q6_K only";
  return ggml_type == kGgmlQ4_K ? kQ4_KBlockBytes : kQ6_KBlockBytes;
}

float HalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return F16ToF32(h);
}

// Row r's super-block `sb` (in ggml's layout) into the group's super-block o.
void PackSuperBlock(uint32_t ggml_type, const uint8_t* sb, size_t r, uint8_t* o) {
  if (ggml_type == kGgmlQ4_K) {
    std::memcpy(o + 2 * r, sb, 2);           // d
    std::memcpy(o + 32 + 2 * r, sb + 2, 2);  // dmin
    for (size_t k = 0; k < 3; ++k) {
      std::memcpy(o + kPackedQ4_KScales + 64 * k + 4 * r, sb + 4 + 4 * k, 4);
    }
    for (size_t t = 0; t < 32; ++t) {
      std::memcpy(o + kPackedQ4_KLevels + t * kChunkBytes + 4 * r, sb + 16 + 4 * t, 4);
    }
    return;
  }
  std::memcpy(o + 2 * r, sb + 208, 2);  // d
  for (size_t j = 0; j < 16; ++j) o[kPackedQ6_KScales + 16 * j + r] = sb[192 + j];
  for (size_t t = 0; t < 32; ++t) {
    std::memcpy(o + kPackedQ6_KLow + t * kChunkBytes + 4 * r, sb + 4 * t, 4);
  }
  for (size_t u = 0; u < 16; ++u) {
    std::memcpy(o + kPackedQ6_KHigh + u * kChunkBytes + 4 * r, sb + 128 + 4 * u, 4);
  }
}

// Row r of a group's Q4_K super-block `sb` against activation blocks x
// (8 of them, first index b0): acc updated as packed_kquant.h says.
float SuperBlockQ4_K(const uint8_t* sb, size_t r, const BlockQ8_0* xq, const float* dx,
                     const int32_t* xsum, size_t b0, float acc) {
  const float d = HalfAt(sb + 2 * r), dmin = HalfAt(sb + 32 + 2 * r);
  uint8_t scales[12];
  for (size_t k = 0; k < 3; ++k) {
    std::memcpy(scales + 4 * k, sb + kPackedQ4_KScales + 64 * k + 4 * r, 4);
  }
  for (int j = 0; j < 8; ++j) {
    const size_t b = b0 + j;
    uint8_t sc, m;
    ScaleMinK4(j, scales, &sc, &m);
    int32_t s = 0;
    for (size_t l = 0; l < 32; ++l) {
      // Weight l of sub-block j: chunk 8 (j / 2) + l / 4, byte l % 4 of row
      // r, low nibble for even j.
      const uint8_t byte =
          sb[kPackedQ4_KLevels + (8 * (j / 2) + l / 4) * kChunkBytes + 4 * r + l % 4];
      s += ((byte >> (j % 2 == 0 ? 0 : 4)) & 0xF) * xq[b].qs[l];
    }
    const float scale = d * static_cast<float>(sc);
    acc = std::fma(static_cast<float>(s), scale * dx[b], acc);
    const float xs = dx[b] * static_cast<float>(xsum[b]);
    acc = std::fma(dmin * static_cast<float>(m), -xs, acc);
  }
  return acc;
}

float SuperBlockQ6_K(const uint8_t* sb, size_t r, const BlockQ8_0* xq, const float* dx, size_t b0,
                     float acc) {
  const float d = HalfAt(sb + 2 * r);
  for (int s = 0; s < 8; ++s) {  // sub-block s: half h, quarter g
    const size_t b = b0 + s;
    const int h = s / 4, g = s % 4;
    for (int k = 0; k < 2; ++k) {  // its two 16-weight scales
      int32_t sum = 0;
      for (int l = 16 * k; l < 16 * k + 16; ++l) {
        const uint8_t lo =
            sb[kPackedQ6_KLow + (16 * h + 8 * (g % 2) + l / 4) * kChunkBytes + 4 * r + l % 4];
        const uint8_t hi = sb[kPackedQ6_KHigh + (8 * h + l / 4) * kChunkBytes + 4 * r + l % 4];
        const int q = ((lo >> (g < 2 ? 0 : 4)) & 0xF) | (((hi >> (2 * g)) & 3) << 4);
        sum += (q - 32) * xq[b].qs[l];
      }
      const auto sc = static_cast<int8_t>(sb[kPackedQ6_KScales + 16 * (8 * h + 2 * g + k) + r]);
      const float scale = d * static_cast<float>(sc);
      acc = std::fma(static_cast<float>(sum), scale * dx[b], acc);
    }
  }
  return acc;
}

}  // namespace

bool PackedKQuantKernelsHere() {
  return CanPackKQuant(kGgmlQ4_K, kPackedKQuantRows, kSuperBlock);
}

size_t PackedKQuantGroupBytes(uint32_t ggml_type, size_t cols) {
  return cols / kSuperBlock * kPackedKQuantRows * BlockBytes(ggml_type);
}

void PackKQuantRows(uint32_t ggml_type, const void* src, size_t rows, size_t cols, void* dst) {
  const size_t block_bytes = BlockBytes(ggml_type);
  CHECK_EQ(rows % kPackedKQuantRows, 0u);
  CHECK_EQ(cols % kSuperBlock, 0u);
  const size_t nsb = cols / kSuperBlock, row_bytes = nsb * block_bytes;
  const size_t super_bytes = kPackedKQuantRows * block_bytes;
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  for (size_t g = 0; g < rows / kPackedKQuantRows; ++g) {
    uint8_t* group = out + g * nsb * super_bytes;
    for (size_t r = 0; r < kPackedKQuantRows; ++r) {
      const uint8_t* row = in + (g * kPackedKQuantRows + r) * row_bytes;
      for (size_t i = 0; i < nsb; ++i) {
        PackSuperBlock(ggml_type, row + i * block_bytes, r, group + i * super_bytes);
      }
    }
  }
}

namespace scalar {

void PackedKQuantMatMulGroups(uint32_t ggml_type, const void* packed, size_t cols,
                              const Activations& x, size_t v_begin, size_t v_end, size_t g_begin,
                              size_t g_end, float* y, size_t y_stride) {
  const size_t super_bytes = kPackedKQuantRows * BlockBytes(ggml_type);
  CHECK(x.has_q8()) << "packed kernels need Q8_0 activations";
  const size_t nsb = cols / kSuperBlock;
  const auto* base = static_cast<const uint8_t*>(packed);
  for (size_t g = g_begin; g < g_end; ++g) {
    const uint8_t* group = base + g * nsb * super_bytes;
    for (size_t v = v_begin; v < v_end; ++v) {
      for (size_t r = 0; r < kPackedKQuantRows; ++r) {
        float acc = 0.0f;
        for (size_t i = 0; i < nsb; ++i) {
          const uint8_t* sb = group + i * super_bytes;
          acc = ggml_type == kGgmlQ4_K
                    ? SuperBlockQ4_K(sb, r, x.q8(v), x.q8_scales(v), x.q8_sums(v), 8 * i, acc)
                    : SuperBlockQ6_K(sb, r, x.q8(v), x.q8_scales(v), 8 * i, acc);
        }
        y[(v - v_begin) * y_stride + g * kPackedKQuantRows + r] = acc;
      }
    }
  }
}

}  // namespace scalar
}  // namespace st
