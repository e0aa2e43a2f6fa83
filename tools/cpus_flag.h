// --cpus LIST: pin the kernel threads (common/cpu_affinity.h,
// common/thread_pool.h). Shared by run, chat, bench, bench-serve, serve and
// worker.
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "common/cpu_affinity.h"

namespace st::tools {

inline void AddCpusFlag(CLI::App* cmd, std::string* text) {
  cmd->add_option("--cpus", *text,
                  "Pin kernel threads to these CPUs, e.g. 0-3 or 1,0: the forward thread\n"
                  "to the first, pool thread i to the (i+1)-th (-t 0 = one thread per CPU).\n"
                  "Pinned idle threads yield their CPU for up to 3 ms before sleeping. For a\n"
                  "worker on the coordinator's host, give both processes the same list so\n"
                  "their threads take turns on the same cores (default: not pinned)")
      ->check([](const std::string& v) -> std::string {
        auto cpus = ParseCpuList(v);
        return cpus.ok() ? "" : std::string(cpus.status().message());
      });
}

// The list --cpus gave (already checked by the flag); empty = not pinned.
inline std::vector<int> CpusFrom(const std::string& text) {
  if (text.empty()) return {};
  auto cpus = ParseCpuList(text);
  return cpus.ok() ? *cpus : std::vector<int>{};
}

}  // namespace st::tools
