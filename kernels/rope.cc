#include "kernels/rope.h"

#include <cmath>
#include <vector>

#include "glog/logging.h"

namespace st {

void RopeNeox(float* x, int n_heads, int head_dim, int64_t pos, double theta) {
  DCHECK_EQ(head_dim % 2, 0);
  const int half = head_dim / 2;
  // cos/sin per frequency, computed once for all heads. Angles in double so
  // large positions keep their precision; the rotation itself is in float.
  thread_local std::vector<float> cs;
  cs.resize(2 * static_cast<size_t>(half));
  for (int j = 0; j < half; ++j) {
    const double phi = static_cast<double>(pos) * std::pow(theta, -2.0 * j / head_dim);
    cs[2 * j] = static_cast<float>(std::cos(phi));
    cs[2 * j + 1] = static_cast<float>(std::sin(phi));
  }
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<size_t>(h) * head_dim;
    for (int j = 0; j < half; ++j) {
      const float c = cs[2 * j];
      const float s = cs[2 * j + 1];
      const float a = v[j];
      const float b = v[j + half];
      v[j] = a * c - b * s;
      v[j + half] = b * c + a * s;
    }
  }
}

}  // namespace st
