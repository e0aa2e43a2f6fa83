// Packing into the 16-row layout and the scalar twin of the packed kernels.
#include "kernels/packed_matrix.h"

#include <cmath>
#include <cstring>

#include "glog/logging.h"
#include "kernels/fp16.h"
#include "kernels/matmul.h"

namespace st {
namespace {

constexpr size_t kChunkBytes = kPackRows * 4;  // 4 bytes per row per chunk

size_t Chunks(DType type) { return type == DType::kQ4_0 ? 4 : 8; }

}  // namespace

size_t PackedGroupBytes(DType type, size_t cols) { return kPackRows * RowBytes(type, cols); }

void PackRows(DType type, const void* src, size_t rows, size_t cols, void* dst) {
  CHECK(type == DType::kQ4_0 || type == DType::kQ8_0) << "PackRows: Q4_0/Q8_0 only";
  CHECK_EQ(rows % kPackRows, 0u);
  CHECK_EQ(cols % kQK, 0u);
  const size_t nb = cols / kQK, row_bytes = RowBytes(type, cols);
  const size_t block_bytes = type == DType::kQ4_0 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
  const size_t chunks = Chunks(type);
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  const size_t data_bytes = PackedBlockDataBytes(type);
  for (size_t g = 0; g < rows / kPackRows; ++g) {
    uint8_t* group = out + g * PackedGroupBytes(type, cols);
    for (size_t i = 0; i < kPackRows; ++i) {
      const uint8_t* row = in + (g * kPackRows + i) * row_bytes;
      for (size_t b = 0; b < nb; ++b) {
        const uint8_t* block = row + b * block_bytes;
        uint8_t* data = group + PackedDataOffset(b, nb, data_bytes);
        std::memcpy(group + PackedScalesOffset(b, nb, data_bytes) + 2 * i, block, 2);
        const uint8_t* qs = block + 2;
        for (size_t c = 0; c < chunks; ++c) {
          uint32_t v;
          std::memcpy(&v, qs + 4 * c, 4);
          if (type == DType::kQ8_0) v ^= 0x80808080u;  // int8 -> offset binary
          std::memcpy(data + c * kChunkBytes + 4 * i, &v, 4);
        }
      }
    }
  }
}

namespace scalar {

void PackedMatMulGroups(DType type, const void* packed, size_t cols, const Activations& x,
                        size_t v_begin, size_t v_end, size_t g_begin, size_t g_end, float* y,
                        size_t y_stride) {
  CHECK(x.has_q8()) << "packed kernels need Q8_0 activations";
  const size_t nb = cols / kQK, chunks = Chunks(type);
  const auto* base = static_cast<const uint8_t*>(packed);
  const size_t data_bytes = PackedBlockDataBytes(type);
  for (size_t g = g_begin; g < g_end; ++g) {
    const uint8_t* group = base + g * PackedGroupBytes(type, cols);
    for (size_t v = v_begin; v < v_end; ++v) {
      const BlockQ8_0* xq = x.q8(v);
      const float* xd = x.q8_scales(v);
      for (size_t i = 0; i < kPackRows; ++i) {
        float acc = 0.0f;
        for (size_t b = 0; b < nb; ++b) {
          int32_t s = 0;
          const uint8_t* data = group + PackedDataOffset(b, nb, data_bytes);
          for (size_t c = 0; c < chunks; ++c) {
            const uint8_t* lane = data + c * kChunkBytes + 4 * i;
            for (size_t j = 0; j < 4; ++j) {
              if (type == DType::kQ4_0) {
                s += ((lane[j] & 0x0F) - 8) * xq[b].qs[4 * c + j];
                s += ((lane[j] >> 4) - 8) * xq[b].qs[16 + 4 * c + j];
              } else {
                s += static_cast<int8_t>(lane[j] ^ 0x80u) * xq[b].qs[4 * c + j];
              }
            }
          }
          uint16_t h;
          std::memcpy(&h, group + PackedScalesOffset(b, nb, data_bytes) + 2 * i, 2);
          const float d = F16ToF32(h) * xd[b];
          acc = std::fma(static_cast<float>(s), d, acc);
        }
        y[(v - v_begin) * y_stride + g * kPackRows + i] = acc;
      }
    }
  }
}

void PackedMatMulGroups(DType type, const void* packed, size_t cols, const Activations& x,
                        size_t g_begin, size_t g_end, float* y, size_t y_stride) {
  scalar::PackedMatMulGroups(type, packed, cols, x, size_t{0}, x.n_vecs(), g_begin, g_end, y,
                             y_stride);
}

}  // namespace scalar
}  // namespace st
