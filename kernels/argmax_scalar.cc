// The scalar twin of st::Argmax: the definition of its result.
#include "kernels/argmax.h"

namespace st::scalar {

int64_t Argmax(const float* x, size_t n) {
  size_t best = 0;
  for (size_t i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  return static_cast<int64_t>(best);
}

}  // namespace st::scalar
