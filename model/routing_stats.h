// Summaries of how concentrated expert routing is.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace st {

struct RoutingSummary {
  // Mean over layers of the share of (token, slot) activations that go to the
  // hottest n_experts / 8 experts of the layer (uniform routing: 12.5%).
  double hot_share = 0;
  // Mean over layers of the fraction of experts chosen for fewer than 14% of
  // tokens (SmallThinker's report: 70-80% on real models).
  double cold_fraction = 0;
};

// counts: [n_layers, n_experts] activation counts; tokens: tokens routed per layer.
RoutingSummary SummarizeRouting(const std::vector<uint64_t>& counts, int n_layers, int n_experts,
                                uint64_t tokens);

std::string FormatRoutingSummary(const RoutingSummary& s);

}  // namespace st
