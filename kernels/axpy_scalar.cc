// scalar::AxpyRow and scalar::AxpyRowsGroupedQ4_0: reference twins of
// st::AxpyRow and the grouped Q4_0 st::AxpyRows (axpy.cc).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/axpy.h"
#include "kernels/fp16.h"
#include "kernels/quant.h"

namespace st::scalar {

void AxpyRow(DType type, const void* w_row, float a, float* y, size_t n) {
  std::vector<float> w(n);
  DequantizeRow(type, w_row, w.data(), n);
  for (size_t j = 0; j < n; ++j) y[j] += a * w[j];
}

void AxpyRowsGroupedQ4_0(const void* w, size_t row_bytes, size_t offset, const uint32_t* rows,
                         const float* a, size_t n_rows, float* y, size_t n) {
  const char* base = static_cast<const char*>(w) + offset;
  for (size_t g = 0; g < n_rows; g += 4) {
    for (size_t b = 0; b < n / kQK; ++b) {
      const BlockQ4_0* blk[4];
      float c[4], m = 0.0f;
      bool bad = false;  // a NaN or infinite coefficient
      for (size_t k = 0; k < 4; ++k) {
        const size_t i = std::min(g + k, n_rows - 1);  // padding: the last row, a = 0
        blk[k] = reinterpret_cast<const BlockQ4_0*>(base + rows[i] * row_bytes) + b;
        c[k] = (g + k < n_rows ? a[g + k] : 0.0f) * F16ToF32(blk[k]->d);
        bad = bad || !std::isfinite(c[k]);
        m = std::max(m, std::fabs(c[k]));
      }
      const bool usable = !bad && m >= kGroupedMinMax;
      const float inv = usable ? 127.0f / m : 0.0f;
      int q[4];
      for (size_t k = 0; k < 4; ++k) {
        q[k] = usable ? static_cast<int>(std::nearbyint(c[k] * inv)) : 0;
      }
      const float scale = bad ? std::numeric_limits<float>::quiet_NaN() : m * (1.0f / 127.0f);
      for (size_t e = 0; e < kQK; ++e) {
        int32_t sum = 0;
        for (size_t k = 0; k < 4; ++k) {
          const uint8_t byte = blk[k]->qs[e % (kQK / 2)];
          sum += q[k] * ((e < kQK / 2 ? byte & 0x0F : byte >> 4) - 8);
        }
        float& out = y[b * kQK + e];
        out = std::fma(static_cast<float>(sum), scale, out);
      }
    }
  }
}

}  // namespace st::scalar
