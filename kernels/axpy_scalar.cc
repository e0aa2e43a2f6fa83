// scalar::AxpyRow: reference twin of st::AxpyRow (axpy.cc).
#include <vector>

#include "kernels/axpy.h"
#include "kernels/quant.h"

namespace st::scalar {

void AxpyRow(DType type, const void* w_row, float a, float* y, size_t n) {
  std::vector<float> w(n);
  DequantizeRow(type, w_row, w.data(), n);
  for (size_t j = 0; j < n; ++j) y[j] += a * w[j];
}

}  // namespace st::scalar
