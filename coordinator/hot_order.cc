#include "coordinator/hot_order.h"

#include <algorithm>
#include <numeric>

#include "storage/expert_pack.h"

namespace st {

std::vector<std::vector<int>> HotOrder(const ExpertStats& stats) {
  std::vector<std::vector<int>> order(stats.n_layers);
  for (int l = 0; l < stats.n_layers; ++l) {
    std::vector<int>& o = order[l];
    o.resize(stats.n_experts);
    std::iota(o.begin(), o.end(), 0);
    const uint64_t* c = stats.counts.data() + static_cast<size_t>(l) * stats.n_experts;
    std::stable_sort(o.begin(), o.end(), [c](int a, int b) { return c[a] > c[b]; });
  }
  return order;
}

absl::StatusOr<std::vector<std::vector<int>>> LoadHotOrder(const std::string& path,
                                                           uint64_t fingerprint,
                                                           const ModelConfig& config) {
  // LoadExpertStats checks fingerprint and shape against a pack header.
  PackHeader expect;
  expect.fingerprint = fingerprint;
  expect.n_layers = static_cast<uint32_t>(config.n_layers);
  expect.n_experts = static_cast<uint32_t>(config.n_experts);
  absl::StatusOr<ExpertStats> stats = LoadExpertStats(path, expect);
  if (!stats.ok()) return stats.status();
  return HotOrder(*stats);
}

std::string DefaultStatsPathForModel(const std::string& gguf_path) {
  return DefaultStatsPath(DefaultPackPath(gguf_path));
}

}  // namespace st
