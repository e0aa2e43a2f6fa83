// Reads every record of a pack through an ExpertSource: checks every
// checksum and measures read throughput (`smallthinker convert --verify`).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "storage/expert_source.h"

namespace st {

struct VerifyResult {
  std::string source;    // name of the source used
  uint64_t records = 0;
  uint64_t bytes = 0;
  double seconds = 0;
  double gb_per_s() const { return seconds > 0 ? bytes / seconds / 1e9 : 0; }
};

// Keeps `in_flight` reads outstanding (each into its own record buffer) until
// every record was read once, in layer-major order. The first failed read
// ends the run with its status (DATA_LOSS naming layer and expert for a bad
// checksum). max_records > 0 stops after that many records, spread evenly
// over the pack (a read-bandwidth sample), starting at record `first`
// (< the spacing; other offsets give disjoint samples). Thread-compatible.
absl::StatusOr<VerifyResult> VerifyPack(std::shared_ptr<const ExpertPack> pack,
                                        const SourceOptions& options, int in_flight,
                                        uint64_t max_records = 0, uint64_t first = 0);

}  // namespace st
