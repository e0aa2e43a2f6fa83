// CPU lists for pinning threads (`--cpus 0-3`, `--cpus 1,0`), checked
// against the CPUs this process may run on (sched_getaffinity: taskset,
// cgroup cpusets).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace st {

// Parses a comma-separated list of CPU numbers and inclusive ranges ("0-3",
// "1,0", "0,2-3"), in the order given. INVALID_ARGUMENT naming the bad part
// for malformed text, an empty list, a CPU listed twice, or a CPU outside
// the process's allowed set (the message lists that set).
absl::StatusOr<std::vector<int>> ParseCpuList(const std::string& text);

// The CPUs the calling thread may run on, ascending.
std::vector<int> AllowedCpus();

// Binds the calling thread to one CPU.
absl::Status PinCurrentThread(int cpu);

// "0-3,6" style text for a sorted list (messages).
std::string FormatCpuList(const std::vector<int>& cpus);

}  // namespace st
