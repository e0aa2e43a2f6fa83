// `smallthinker membw`: the machine's memory read bandwidth.
#include <cstdio>
#include <memory>

#include "kernels/memory_bandwidth.h"
#include "common/units.h"
#include "tools/commands.h"

namespace st::tools {

void RegisterMembw(CLI::App& app) {
  struct Flags {
    std::vector<int> threads = {1, 2};
    std::string size = "1GiB";
    int passes = 7;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "membw",
      "Measure sequential memory read bandwidth (median of passes over a large buffer):\n"
      "the roofline for decode speed is bandwidth / bytes read per token.");
  cmd->add_option("-t,--threads", f->threads, "Thread counts to measure, repeatable or comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--size", f->size, "Buffer size")->type_name("SIZE")->capture_default_str();
  cmd->add_option("--passes", f->passes, "Timed passes")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->callback([f] {
    auto bytes = ParseByteSize(f->size);
    if (!bytes.ok()) {
      std::fprintf(stderr, "error: %s\n", bytes.status().ToString().c_str());
      ExitCode() = 2;
      return;
    }
    if (*bytes > (uint64_t{64} << 30)) {
      std::fprintf(stderr, "error: --size %s is larger than 64 GiB\n", f->size.c_str());
      ExitCode() = 2;
      return;
    }
    if (*bytes < (uint64_t{64} << 20)) {
      std::fprintf(stderr, "warning: --size %s may fit in the CPU caches: this measures them, "
                   "not memory\n", f->size.c_str());
    }
    for (int t : f->threads) {
      ThreadPool pool(t);
      BandwidthResult r = MeasureReadBandwidth(pool, *bytes, f->passes);
      std::printf("threads %d: read bandwidth %.1f GB/s median, %.1f GB/s best (%s x %d passes, "
                  "%s in 2 MiB pages)\n",
                  r.threads, r.median_gbps, r.best_gbps, FormatBytes(r.bytes).c_str(), r.passes,
                  FormatBytes(r.huge_page_bytes).c_str());
    }
  });
}

}  // namespace st::tools
