// This process's memory as the kernel counts it (/proc/self/status).
#pragma once

#include <cstdint>

namespace st {

struct ProcessMemory {
  uint64_t rss_bytes = 0;       // VmRSS: resident now (anonymous + file-backed + shmem)
  uint64_t peak_rss_bytes = 0;  // VmHWM: the peak of VmRSS so far
};

// Zeros when /proc is unavailable.
ProcessMemory ReadProcessMemory();

}  // namespace st
