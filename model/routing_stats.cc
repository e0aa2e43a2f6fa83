#include "model/routing_stats.h"

#include <algorithm>
#include <functional>

#include "absl/strings/str_format.h"

namespace st {

RoutingSummary SummarizeRouting(const std::vector<uint64_t>& counts, int n_layers, int n_experts,
                                uint64_t tokens) {
  RoutingSummary s;
  if (tokens == 0 || n_layers == 0 || n_experts == 0) return s;
  const int n_hot = std::max(1, n_experts / 8);
  for (int l = 0; l < n_layers; ++l) {
    std::vector<uint64_t> c(counts.begin() + static_cast<size_t>(l) * n_experts,
                            counts.begin() + static_cast<size_t>(l + 1) * n_experts);
    std::sort(c.begin(), c.end(), std::greater<>());
    uint64_t total = 0, hot = 0;
    int cold = 0;
    for (int e = 0; e < n_experts; ++e) {
      total += c[e];
      if (e < n_hot) hot += c[e];
      cold += c[e] < 0.14 * tokens;
    }
    s.hot_share += total ? static_cast<double>(hot) / total : 0;
    s.cold_fraction += static_cast<double>(cold) / n_experts;
  }
  s.hot_share /= n_layers;
  s.cold_fraction /= n_layers;
  return s;
}

std::string FormatRoutingSummary(const RoutingSummary& s) {
  return absl::StrFormat(
      "routing: hottest 1/8 of experts take %.1f%% of activations; %.1f%% of experts fire in "
      "<14%% of tokens",
      100 * s.hot_share, 100 * s.cold_fraction);
}

}  // namespace st
