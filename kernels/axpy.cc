#include "kernels/axpy.h"

#include <vector>

#include "kernels/quant.h"

namespace st {

void AxpyRow(DType type, const void* w_row, float a, float* y, size_t n) {
  if (type == DType::kF32) {
    const float* w = static_cast<const float*>(w_row);
    for (size_t j = 0; j < n; ++j) y[j] += a * w[j];
    return;
  }
  thread_local std::vector<float> tmp;
  tmp.resize(n);
  DequantizeRow(type, w_row, tmp.data(), n);
  for (size_t j = 0; j < n; ++j) y[j] += a * tmp[j];
}

}  // namespace st
