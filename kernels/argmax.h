// Greedy token choice: the index of the largest logit.
#pragma once

#include <cstddef>
#include <cstdint>

namespace st {

// Lowest index of the maximal value of x[0..n), n > 0, with the semantics of
// the scalar loop `best = 0; for i: if (x[i] > x[best]) best = i` (ties to
// the lowest index; NaNs never win; a NaN at x[0] wins, as nothing compares
// greater than it). SIMD: a max pass, then a search for its first index.
int64_t Argmax(const float* x, size_t n);

namespace scalar {
int64_t Argmax(const float* x, size_t n);
}  // namespace scalar

}  // namespace st
