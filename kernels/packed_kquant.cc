// Packing into the 16-row Q4_K layout and the scalar twin of its kernel
// (layout and numerics in packed_kquant.h).
#include "kernels/packed_kquant.h"

#include <cmath>
#include <cstring>

#include "glog/logging.h"
#include "kernels/fp16.h"
#include "kernels/ggml_storage.h"
#include "kernels/matmul.h"

namespace st {
namespace {

constexpr size_t kSuperBlock = 256;
constexpr size_t kGroupSuperBytes = kPackedKQuantRows * kQ4_KBlockBytes;  // 2304
constexpr size_t kScalesOffset = 64, kQsOffset = 256, kChunkBytes = 64;

}  // namespace

size_t PackedKQuantGroupBytes(uint32_t ggml_type, size_t cols) {
  CHECK_EQ(ggml_type, kGgmlQ4_K) << "packed K-quant: Q4_K only";
  return cols / kSuperBlock * kGroupSuperBytes;
}

void PackKQuantRows(uint32_t ggml_type, const void* src, size_t rows, size_t cols, void* dst) {
  CHECK_EQ(ggml_type, kGgmlQ4_K) << "PackKQuantRows: Q4_K only";
  CHECK_EQ(rows % kPackedKQuantRows, 0u);
  CHECK_EQ(cols % kSuperBlock, 0u);
  const size_t nsb = cols / kSuperBlock, row_bytes = nsb * kQ4_KBlockBytes;
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  for (size_t g = 0; g < rows / kPackedKQuantRows; ++g) {
    uint8_t* group = out + g * nsb * kGroupSuperBytes;
    for (size_t r = 0; r < kPackedKQuantRows; ++r) {
      const uint8_t* row = in + (g * kPackedKQuantRows + r) * row_bytes;
      for (size_t i = 0; i < nsb; ++i) {
        const uint8_t* sb = row + i * kQ4_KBlockBytes;
        uint8_t* o = group + i * kGroupSuperBytes;
        std::memcpy(o + 2 * r, sb, 2);           // d
        std::memcpy(o + 32 + 2 * r, sb + 2, 2);  // dmin
        for (size_t k = 0; k < 3; ++k) {
          std::memcpy(o + kScalesOffset + 64 * k + 4 * r, sb + 4 + 4 * k, 4);
        }
        for (size_t chunk = 0; chunk < 32; ++chunk) {
          std::memcpy(o + kQsOffset + chunk * kChunkBytes + 4 * r, sb + 16 + 4 * chunk, 4);
        }
      }
    }
  }
}

namespace scalar {

void PackedKQuantMatMulGroups(uint32_t ggml_type, const void* packed, size_t cols,
                              const Activations& x, size_t v_begin, size_t v_end, size_t g_begin,
                              size_t g_end, float* y, size_t y_stride) {
  CHECK_EQ(ggml_type, kGgmlQ4_K) << "packed K-quant: Q4_K only";
  CHECK(x.has_q8()) << "packed kernels need Q8_0 activations";
  const size_t nsb = cols / kSuperBlock;
  const auto* base = static_cast<const uint8_t*>(packed);
  for (size_t g = g_begin; g < g_end; ++g) {
    const uint8_t* group = base + g * nsb * kGroupSuperBytes;
    for (size_t v = v_begin; v < v_end; ++v) {
      const BlockQ8_0* xq = x.q8(v);
      const float* dx = x.q8_scales(v);
      const int32_t* xsum = x.q8_sums(v);
      for (size_t r = 0; r < kPackedKQuantRows; ++r) {
        float acc = 0.0f;
        for (size_t i = 0; i < nsb; ++i) {
          const uint8_t* sb = group + i * kGroupSuperBytes;
          uint16_t h;
          std::memcpy(&h, sb + 2 * r, 2);
          const float d = F16ToF32(h);
          std::memcpy(&h, sb + 32 + 2 * r, 2);
          const float dmin = F16ToF32(h);
          uint8_t scales[12];
          for (size_t k = 0; k < 3; ++k) {
            std::memcpy(scales + 4 * k, sb + kScalesOffset + 64 * k + 4 * r, 4);
          }
          for (int j = 0; j < 8; ++j) {
            const size_t b = 8 * i + j;
            uint8_t sc, m;
            ScaleMinK4(j, scales, &sc, &m);
            int32_t s = 0;
            for (size_t l = 0; l < 32; ++l) {
              // Weight l of sub-block j: chunk 8 (j / 2) + l / 4, byte l % 4
              // of row r, low nibble for even j.
              const uint8_t byte =
                  sb[kQsOffset + (8 * (j / 2) + l / 4) * kChunkBytes + 4 * r + l % 4];
              s += ((byte >> (j % 2 == 0 ? 0 : 4)) & 0xF) * xq[b].qs[l];
            }
            const float scale = d * static_cast<float>(sc);
            acc = std::fma(static_cast<float>(s), scale * dx[b], acc);
            const float xs = dx[b] * static_cast<float>(xsum[b]);
            acc = std::fma(dmin * static_cast<float>(m), -xs, acc);
          }
        }
        y[(v - v_begin) * y_stride + g * kPackedKQuantRows + r] = acc;
      }
    }
  }
}

}  // namespace scalar
}  // namespace st
