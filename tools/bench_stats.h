// Small statistics shared by `bench` and `bench-serve`.
#pragma once

#include <algorithm>
#include <vector>

namespace st::tools {

// The median of v (the mean of the middle two for an even count); 0 if empty.
inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace st::tools
