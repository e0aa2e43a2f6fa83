// Row (de)quantization. The Q4_0 / Q8_0 quantizers reproduce ggml's
// quantize_row_q4_0_ref / quantize_row_q8_0_ref bit for bit (same float
// operations in the same order), so files we write match llama.cpp's.
#include "kernels/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "glog/logging.h"
#include "kernels/fp16.h"

namespace st {
namespace {

// dst may be unaligned (byte buffers): blocks are built locally and copied.
void QuantizeQ4_0(const float* x, char* dst, size_t n) {
  for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
    BlockQ4_0 y;
    // The value with the largest magnitude, sign kept (first one on ties).
    float amax = 0.0f;
    float max = 0.0f;
    for (size_t j = 0; j < kQK; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y.d = F32ToF16(d);
    for (size_t j = 0; j < kQK / 2; ++j) {
      // ggml casts to int8_t; x * id is within [-8, 8] so the truncation
      // through int is identical and avoids UB for non-finite inputs.
      const float x0 = x[j] * id + 8.5f;
      const float x1 = x[j + kQK / 2] * id + 8.5f;
      const int q0 = std::isfinite(x0) ? std::min(15, static_cast<int>(std::clamp(x0, 0.0f, 16.0f))) : 8;
      const int q1 = std::isfinite(x1) ? std::min(15, static_cast<int>(std::clamp(x1, 0.0f, 16.0f))) : 8;
      y.qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
    std::memcpy(dst + b * sizeof(y), &y, sizeof(y));
  }
}

void QuantizeQ8_0(const float* x, char* dst, size_t n) {
  for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
    BlockQ8_0 y;
    float amax = 0.0f;
    for (size_t j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y.d = F32ToF16(d);
    for (size_t j = 0; j < kQK; ++j) {
      // |x * id| <= 127 up to rounding, so roundf stays within int8.
      const float r = std::round(std::clamp(x[j] * id, -127.0f, 127.0f));
      y.qs[j] = static_cast<int8_t>(std::isfinite(r) ? r : 0.0f);
    }
    std::memcpy(dst + b * sizeof(y), &y, sizeof(y));
  }
}

}  // namespace

void QuantizeRow(DType type, const float* x, void* dst, size_t n) {
  DCHECK_EQ(n % BlockElems(type), 0u) << DTypeName(type);
  switch (type) {
    case DType::kF32:
      std::memcpy(dst, x, n * sizeof(float));
      return;
    case DType::kF16: {
      auto* out = static_cast<char*>(dst);
      for (size_t j = 0; j < n; ++j) {
        const uint16_t h = F32ToF16(x[j]);
        std::memcpy(out + 2 * j, &h, 2);
      }
      return;
    }
    case DType::kBF16: {
      auto* out = static_cast<char*>(dst);
      for (size_t j = 0; j < n; ++j) {
        const uint16_t h = F32ToBF16(x[j]);
        std::memcpy(out + 2 * j, &h, 2);
      }
      return;
    }
    case DType::kQ4_0:
      QuantizeQ4_0(x, static_cast<char*>(dst), n);
      return;
    case DType::kQ8_0:
      QuantizeQ8_0(x, static_cast<char*>(dst), n);
      return;
  }
  LOG(FATAL) << "QuantizeRow: bad dtype " << static_cast<uint32_t>(type);
}

void DequantizeRow(DType type, const void* src, float* y, size_t n) {
  DCHECK_EQ(n % BlockElems(type), 0u) << DTypeName(type);
  const auto* in = static_cast<const char*>(src);
  switch (type) {
    case DType::kF32:
      std::memcpy(y, src, n * sizeof(float));
      return;
    case DType::kF16:
      for (size_t j = 0; j < n; ++j) {
        uint16_t h;
        std::memcpy(&h, in + 2 * j, 2);
        y[j] = F16ToF32(h);
      }
      return;
    case DType::kBF16:
      for (size_t j = 0; j < n; ++j) {
        uint16_t h;
        std::memcpy(&h, in + 2 * j, 2);
        y[j] = BF16ToF32(h);
      }
      return;
    case DType::kQ4_0:
      for (size_t b = 0; b < n / kQK; ++b, y += kQK) {
        BlockQ4_0 blk;
        std::memcpy(&blk, in + b * sizeof(BlockQ4_0), sizeof(blk));
        const float d = F16ToF32(blk.d);
        for (size_t j = 0; j < kQK / 2; ++j) {
          y[j] = static_cast<float>((blk.qs[j] & 0x0F) - 8) * d;
          y[j + kQK / 2] = static_cast<float>((blk.qs[j] >> 4) - 8) * d;
        }
      }
      return;
    case DType::kQ8_0:
      for (size_t b = 0; b < n / kQK; ++b, y += kQK) {
        BlockQ8_0 blk;
        std::memcpy(&blk, in + b * sizeof(BlockQ8_0), sizeof(blk));
        const float d = F16ToF32(blk.d);
        for (size_t j = 0; j < kQK; ++j) y[j] = static_cast<float>(blk.qs[j]) * d;
      }
      return;
  }
  LOG(FATAL) << "DequantizeRow: bad dtype " << static_cast<uint32_t>(type);
}

}  // namespace st
