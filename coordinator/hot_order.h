// Hot experts for placement, from the routing counts that runs record in the
// expert stats file (storage/expert_stats.h, MODEL.gguf.stpack.stats).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/config.h"
#include "storage/expert_stats.h"

namespace st {

// Per layer, expert ids from most to least often routed (ties: lower id
// first). Feeds PlacementOptions::hot_order.
std::vector<std::vector<int>> HotOrder(const ExpertStats& stats);

// Reads the stats file at `path` for the model with `fingerprint` and
// `config`. NOT_FOUND if it does not exist; INVALID_ARGUMENT (naming the
// path) if it is malformed or was recorded for another model.
absl::StatusOr<std::vector<std::vector<int>>> LoadHotOrder(const std::string& path,
                                                           uint64_t fingerprint,
                                                           const ModelConfig& config);

// "<gguf>.stpack.stats": where `run` records counts for the default pack.
std::string DefaultStatsPathForModel(const std::string& gguf_path);

}  // namespace st
