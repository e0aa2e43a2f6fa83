// Flags of `run`, `chat` and `bench` that put experts behind the expert
// cache (storage/offload.h), and the report of what the cache did.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/process_memory.h"
#include "common/units.h"
#include "model/model.h"
#include "nlohmann/json.hpp"
#include "storage/offload.h"
#include "tools/commands.h"

namespace st::tools {

struct OffloadFlags {
  std::string memory_budget;  // "" = none
  std::string pack;
  bool no_pack = false;
  std::string io = "auto";
  int queue_depth = SourceOptions{}.queue_depth;
  std::string io_chunk = "512KiB";  // SourceOptions::read_chunk_bytes
  bool speculate = false;
  bool no_pin = false;
  double pin_fraction = 0.0;
  bool no_stats = false;
  // The budget's margin for transient buffers and allocator slack. For one
  // request (run, chat, bench) at 1 GiB the 4b's peak RSS stayed 72-122 MiB
  // under the budget with a 64 MiB margin (session 25, -n 256 and a -b 512
  // prompt): the whole margin was expert slots left empty. serve keeps 64 MiB: request bodies of up to 8 MiB and
  // their parsed JSON per connection.
  uint64_t margin_bytes = 24ull << 20;
  // serve's --kv-budget (0 = none): the plan reserves at most this for KV
  // caches, so the expert cache gets the rest.
  uint64_t kv_cap_bytes = 0;
};
inline constexpr uint64_t kServeMarginBytes = 64ull << 20;

// A CLI11 check that ParseByteSize accepts the value: bad sizes fail before
// the model loads.
// A size (ParseByteSize), and not 0: "--memory-budget 0" had silently
// meant no budget at all.
inline CLI::Validator ByteSizeCheck() {
  return CLI::Validator(
      [](std::string& s) {
        absl::StatusOr<uint64_t> b = ParseByteSize(s);
        if (!b.ok()) return std::string(b.status().message());
        return *b == 0 ? std::string("0 holds nothing (leave the flag out for no limit)")
                       : std::string();
      },
      "");  // the option's type_name says SIZE
}

// records_stats: the command adds its routing counts to the pack's stats
// file (run, chat, serve; benchmarks leave it alone, so their synthetic
// prompts do not decide what a user's runs preload).
inline void AddOffloadFlags(CLI::App* cmd, OffloadFlags* f, bool records_stats = true) {
  cmd->add_option("--memory-budget", f->memory_budget,
                  "RAM for the whole process, e.g. 1GiB. Dense weights, KV cache and buffers\n"
                  "are subtracted and the rest caches experts read from the pack; the engine\n"
                  "refuses to start if the dense part alone does not fit. Default: no budget\n"
                  "(with a pack, every expert is read into RAM once)")
      ->type_name("SIZE")
      ->check(ByteSizeCheck());
  cmd->add_option("--pack", f->pack, "Expert pack (default: MODEL.gguf.stpack beside the GGUF, if present)");
  cmd->add_flag("--no-pack", f->no_pack, "Ignore any pack: experts run from the GGUF mapping");
  cmd->add_option("--io", f->io, "Expert reads: auto | io_uring | pread | mmap | memory")
      ->check(CLI::IsMember({"auto", "io_uring", "pread", "mmap", "memory"}))
      ->capture_default_str();
  cmd->add_option("--io-depth", f->queue_depth,
                  "io_uring reads in flight, each of at most --io-chunk bytes. A record's\n"
                  "chunks land in order and are checksummed as they land; more reads in\n"
                  "flight share the disk and land later, together")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--io-chunk", f->io_chunk,
                  "Size of one io_uring read: records are read in chunks of this size (a\n"
                  "multiple of 4KiB)")
      ->check(CLI::Validator(
          [](std::string& s) {
            absl::StatusOr<uint64_t> b = ParseByteSize(s);
            if (!b.ok()) return std::string(b.status().message());
            return *b > 0 && *b % kPackAlignment == 0 ? std::string()
                                                       : std::string("not a multiple of 4KiB");
          },
          "SIZE"))
      ->capture_default_str();
  cmd->add_flag("--speculate", f->speculate,
                "Also run layer l+1's router right after layer l's attention and prefetch its\n"
                "guess (guessed reads wait behind needed ones; wrong ones not started are dropped)");
  cmd->add_flag("--no-pin", f->no_pin,
                "Ignore recorded expert statistics: no pinned and no preloaded experts");
  cmd->add_option("--pin-fraction", f->pin_fraction,
                  "Share of the cache pinned to the hottest recorded experts for the whole run\n"
                  "(default 0: the recorded hottest are only preloaded, and LRU decides)")
      ->check(FiniteRange(0.0, 1.0))
      ->capture_default_str();
  if (records_stats) {
    cmd->add_flag("--no-stats", f->no_stats,
                  "Do not add this run's expert activation counts to the pack's stats file");
  }
}

// The pack's flags given with other than their defaults (for the warning
// that they are ignored when no pack is in use).
inline std::vector<std::string> PackFlagsGiven(const OffloadFlags& f) {
  const OffloadFlags defaults;
  std::vector<std::string> given;
  if (!f.pack.empty()) given.push_back("--pack");
  if (f.io != defaults.io) given.push_back("--io");
  if (f.queue_depth != defaults.queue_depth) given.push_back("--io-depth");
  if (f.io_chunk != defaults.io_chunk) given.push_back("--io-chunk");
  if (f.speculate) given.push_back("--speculate");
  if (f.no_pin) given.push_back("--no-pin");
  if (f.pin_fraction != defaults.pin_fraction) given.push_back("--pin-fraction");
  if (f.no_stats) given.push_back("--no-stats");
  return given;
}

// Applies the flags to a loaded model. Returns nullptr when the model runs
// without a pack (and no budget was asked for). The Offload is owned by the model.
inline absl::StatusOr<Offload*> ApplyOffload(Model& model, const OffloadFlags& f,
                                             int64_t context_tokens, int sessions = 1) {
  OffloadOptions o;
  if (!f.memory_budget.empty()) {
    absl::StatusOr<uint64_t> b = ParseByteSize(f.memory_budget);
    if (!b.ok()) return b.status();
    o.memory_budget = *b;
  }
  o.pack_path = f.pack;
  o.use_pack = !f.no_pack;
  absl::StatusOr<SourceKind> kind = ParseSourceKind(f.io);
  if (!kind.ok()) return kind.status();
  o.source.kind = *kind;
  o.source.queue_depth = f.queue_depth;
  absl::StatusOr<uint64_t> chunk = ParseByteSize(f.io_chunk);
  if (!chunk.ok()) return chunk.status();
  o.source.read_chunk_bytes = *chunk;
  o.pin_hot = !f.no_pin;
  o.pin_fraction = f.pin_fraction;
  o.speculate = f.speculate;
  o.context_tokens = context_tokens;
  o.sessions = sessions;
  o.margin_bytes = f.margin_bytes;
  o.kv_cap_bytes = f.kv_cap_bytes;
  // Test hook: a cache of exactly this many slots, whatever the memory
  // (process RSS varies by a MiB between runs, more than a tiny model's
  // experts). Used by tests/serve.
  if (const char* slots = std::getenv("ST_TEST_CACHE_SLOTS")) o.cache_slots = std::atoi(slots);
  absl::StatusOr<std::unique_ptr<Offload>> offload = EnableOffload(model, o);
  if (!offload.ok()) return offload.status();
  if (*offload == nullptr) {
    // Experts run from the GGUF mapping: the pack's flags have nothing to act on.
    const std::vector<std::string> unused = PackFlagsGiven(f);
    if (!unused.empty()) {
      std::fprintf(stderr, "warning: %s ignored: no expert pack is in use%s\n",
                   absl::StrJoin(unused, ", ").c_str(),
                   f.no_pack ? " (--no-pack)" : " (make one with `smallthinker convert`)");
    }
    return nullptr;
  }
  std::shared_ptr<Offload> owned(std::move(*offload));
  model.Adopt(owned);
  return owned.get();
}

// Cache, sparsity and memory figures over `tokens` decoded/evaluated tokens.
inline nlohmann::json OffloadReport(Offload* offload, uint64_t tokens) {
  nlohmann::json j;
  const ProcessMemory mem = ReadProcessMemory();
  j["peak_rss_bytes"] = mem.peak_rss_bytes;
  if (offload == nullptr) return j;
  CachedExpertExecutor& ex = offload->executor();
  const ExpertCacheCounters& c = ex.cache().counters();
  const double per = tokens ? 1.0 / tokens : 0.0;
  j["memory_budget_bytes"] = offload->plan().budget;
  j["cache_slots"] = offload->plan().slots;
  j["cache_pinned"] = offload->plan().pinned;
  j["cache_preloaded"] = offload->plan().preloaded;
  j["total_experts"] = offload->plan().total_experts;
  j["io"] = std::string(ex.cache().source().name());
  j["cache_requests"] = c.requests;
  j["cache_hits"] = c.hits;
  j["cache_misses"] = c.misses;
  j["cache_hit_rate"] = c.requests ? static_cast<double>(c.hits) / c.requests : 0.0;
  j["cache_evictions"] = c.evictions;
  j["bytes_read"] = c.bytes_read;
  j["bytes_read_per_token"] = c.bytes_read * per;
  j["io_stall_seconds"] = c.stall_seconds;
  j["io_stall_ms_per_token"] = c.stall_seconds * 1e3 * per;
  j["active_neuron_fraction"] = ex.sparsity().active_fraction();
  if (ex.speculation().guessed > 0) {
    j["speculation_precision"] = ex.speculation().precision();
    j["speculation_recall"] = ex.speculation().recall();
    // Per decode token: a prompt's tokens are never guessed for.
    j["speculation_reads_per_token"] = ex.speculation().reads_per_token();
    j["speculation_read_precision"] = ex.speculation().read_precision();
    // Guessed reads dropped before they started: the routing chose other
    // experts, or a needed read took the slot (ExpertCache::DropGuess).
    j["speculation_dropped_per_token"] =
        ex.speculation().tokens
            ? static_cast<double>(c.guesses_dropped) / ex.speculation().tokens
            : 0.0;
  }
  return j;
}

// " | speculation precision P% recall R%, N reads/token, U% of them used,
// D/token dropped unread" from OffloadReport's figures, or "" without
// speculation.
inline std::string FormatSpeculation(const nlohmann::json& j) {
  if (!j.contains("speculation_precision")) return "";
  return absl::StrFormat(
      " | speculation precision %.1f%% recall %.1f%%, %.2f reads/token, %.1f%% of them used, "
      "%.2f/token dropped unread",
      100 * j["speculation_precision"].get<double>(),
      100 * j["speculation_recall"].get<double>(), j.value("speculation_reads_per_token", 0.0),
      100 * j.value("speculation_read_precision", 0.0),
      j.value("speculation_dropped_per_token", 0.0));
}

// One human-readable line of OffloadReport.
inline std::string FormatOffloadReport(const nlohmann::json& j) {
  std::string s = absl::StrFormat("peak RSS %s", FormatBytes(j.value("peak_rss_bytes", uint64_t{0})));
  if (!j.contains("cache_slots")) return s;
  s += absl::StrFormat(
      " | experts via %s: %d/%d cached (%d pinned), hit rate %.1f%%, %s read/token, "
      "I/O stall %.2f ms/token, %d evictions | active neurons %.1f%%",
      j["io"].get<std::string>(), j["cache_slots"].get<int>(), j["total_experts"].get<int>(),
      j["cache_pinned"].get<int>(), 100 * j["cache_hit_rate"].get<double>(),
      FormatBytes(static_cast<uint64_t>(j["bytes_read_per_token"].get<double>())),
      j["io_stall_ms_per_token"].get<double>(), j["cache_evictions"].get<int>(),
      100 * j["active_neuron_fraction"].get<double>());
  s += FormatSpeculation(j);
  return s;
}

// Adds this run's routing counts to the stats file (warns on failure).
inline void SaveOffloadStats(Offload* offload, Model& model, const OffloadFlags& f) {
  if (offload == nullptr || f.no_stats) return;
  absl::Status s = offload->SaveStats(model.forward());
  if (!s.ok()) std::fprintf(stderr, "warning: expert stats not saved: %s\n", s.ToString().c_str());
}

}  // namespace st::tools
