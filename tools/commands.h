// Subcommands of the `smallthinker` tool. Each Register* adds one CLI11
// subcommand whose callback runs it; flags are converted to config structs at
// once and never passed further down.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "common/units.h"
#include "model/config.h"

namespace st::tools {

void RegisterSynth(CLI::App& app);
void RegisterInspect(CLI::App& app);
void RegisterTokenize(CLI::App& app);
void RegisterRun(CLI::App& app);
void RegisterChat(CLI::App& app);
void RegisterMembw(CLI::App& app);
void RegisterConvert(CLI::App& app);
void RegisterBench(CLI::App& app);
void RegisterWorker(CLI::App& app);
void RegisterServe(CLI::App& app);
void RegisterBenchServe(CLI::App& app);

// Exit code of the subcommand that ran (set by its callback).
int& ExitCode();

// CLI::Range(lo, hi) for a floating-point flag, refusing NaN too: CLI11's
// Range compares, and every comparison with NaN is false ("--pin-fraction
// nan" had passed, then been cast to an int).
inline CLI::Validator FiniteRange(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        double v = 0;
        if (!absl::SimpleAtod(s, &v) || !(v >= lo && v <= hi)) {
          return "Value " + s + " not in range [" + std::to_string(lo) + " - " + std::to_string(hi) + "]";
        }
        return "";
      },
      "FLOAT in [" + std::to_string(lo) + " - " + std::to_string(hi) + "]");
}

// --bandwidth-size `flag` in bytes: more than 0 and at most 64 GiB, else
// INVALID_ARGUMENT; under 64 MiB, a warning on stderr that the buffer may
// fit in the CPU caches (the memory roofline would then measure them).
inline absl::StatusOr<uint64_t> BandwidthBytes(const std::string& flag) {
  const absl::StatusOr<uint64_t> bytes = ParseByteSize(flag);
  if (!bytes.ok() || *bytes == 0 || *bytes > (uint64_t{64} << 30)) {
    return absl::InvalidArgumentError("bad --bandwidth-size '" + flag +
                                      "' (more than 0, at most 64 GiB)");
  }
  if (*bytes < (uint64_t{64} << 20)) {
    std::fprintf(stderr, "warning: --bandwidth-size %s may fit in the CPU caches: the memory "
                 "roofline then measures them, not memory (use 64MiB or more)\n", flag.c_str());
  }
  return *bytes;
}

// The context a run gets for --ctx `requested`: at most the model's trained
// context length (as Session and the engine cap it), with a warning on
// stderr when that lowers it.
inline int64_t ContextSize(const ModelConfig& config, int64_t requested) {
  if (requested <= config.context_length) return requested;
  std::fprintf(stderr, "warning: context size %lld lowered to %lld, the model's context length\n",
               static_cast<long long>(requested), static_cast<long long>(config.context_length));
  return config.context_length;
}

}  // namespace st::tools
