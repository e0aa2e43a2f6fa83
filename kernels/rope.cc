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
  // The frequencies depend only on (theta, head_dim), and q and k of a token
  // share the position, so both tables are kept from the previous call on
  // this thread: the numbers are the same, computed once instead of per call.
  struct Table {
    double theta = 0;
    int head_dim = 0;
    int64_t pos = -1;
    std::vector<double> freq;  // theta^(-2j / head_dim)
    std::vector<float> cs;     // cos, sin of pos * freq[j]
  };
  thread_local Table t;
  if (t.theta != theta || t.head_dim != head_dim) {
    t.theta = theta;
    t.head_dim = head_dim;
    t.pos = -1;
    t.freq.resize(half);
    for (int j = 0; j < half; ++j) t.freq[j] = std::pow(theta, -2.0 * j / head_dim);
  }
  if (t.pos != pos) {
    t.pos = pos;
    t.cs.resize(2 * static_cast<size_t>(half));
    for (int j = 0; j < half; ++j) {
      const double phi = static_cast<double>(pos) * t.freq[j];
      t.cs[2 * j] = static_cast<float>(std::cos(phi));
      t.cs[2 * j + 1] = static_cast<float>(std::sin(phi));
    }
  }
  const std::vector<float>& cs = t.cs;
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
