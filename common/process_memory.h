// This process's memory as the kernel counts it (/proc/self/status), and
// giving file-backed pages back.
#pragma once

#include <cstddef>
#include <cstdint>

namespace st {

struct ProcessMemory {
  uint64_t rss_bytes = 0;       // VmRSS: resident now (anonymous + file-backed + shmem)
  uint64_t peak_rss_bytes = 0;  // VmHWM: the peak of VmRSS so far
};

// Zeros when /proc is unavailable.
ProcessMemory ReadProcessMemory();

// MemAvailable of /proc/meminfo (what the kernel estimates it can give
// without swapping); 0 when unknown.
uint64_t AvailableMemoryBytes();

// MADV_DONTNEED on the whole pages inside [p, p + n): for a file mapping,
// drops them from this process (re-read from the file if touched again).
// Never call it on anonymous memory whose contents must survive.
void ReleaseWholePages(const void* p, size_t n);

}  // namespace st
