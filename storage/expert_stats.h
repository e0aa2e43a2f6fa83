// Recorded expert activation counts: a small text file beside the pack
// (MODEL.gguf.stpack.stats) that the engine adds each run's routing counts to
// and reads back to pin the hottest experts in the cache.
//
//   smallthinker-expert-stats 1
//   fingerprint 0123456789abcdef
//   shape <n_layers> <n_experts>
//   <n_experts counts of layer 0>
//   ...
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "storage/expert_pack.h"

namespace st {

struct ExpertStats {
  uint64_t fingerprint = 0;
  int n_layers = 0, n_experts = 0;
  std::vector<uint64_t> counts;  // [n_layers * n_experts]

  // The n most often chosen (layer, expert) pairs, most frequent first
  // (ties: lower layer, then lower expert); experts never chosen are left out.
  std::vector<std::pair<int, int>> Hottest(int n) const;
};

// "<pack path>.stats".
std::string DefaultStatsPath(const std::string& pack_path);

// NOT_FOUND if the file does not exist; INVALID_ARGUMENT (naming the path
// and line) if it is malformed or does not match the pack's fingerprint and
// shape.
absl::StatusOr<ExpertStats> LoadExpertStats(const std::string& path, const PackHeader& pack);
// Writes atomically (temporary file + rename).
absl::Status SaveExpertStats(const std::string& path, const ExpertStats& stats);

}  // namespace st
