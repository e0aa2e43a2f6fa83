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
// shape; another error (PERMISSION_DENIED, ...) naming the path if it exists
// but cannot be read.
absl::StatusOr<ExpertStats> LoadExpertStats(const std::string& path, const PackHeader& pack);
// Writes atomically (a temporary file of this process + rename). A `path`
// that is a symlink stays one: the file it names is replaced.
absl::Status SaveExpertStats(const std::string& path, const ExpertStats& stats);

// Adds `delta` ([n_layers * n_experts] counts) to the file at `path` (a
// missing or unusable one -- malformed, another model's -- starts from
// zeros; `replaced` says why it was dropped), saturating at 2^64 - 1. A
// file that exists but cannot be read is left alone: its error is returned.
// Runs under an exclusive flock on "<path>.lock", so runs that end at the
// same time (several `run`s on one pack) add up instead of overwriting
// each other. A symlinked `path` is followed (the lock is its file's).
absl::Status AddExpertStats(const std::string& path, const PackHeader& pack,
                            const std::vector<uint64_t>& delta, absl::Status* replaced = nullptr);

}  // namespace st
