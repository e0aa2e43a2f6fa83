// Measures the machine's sequential memory read bandwidth, the ceiling of
// decode speed on a CPU (tokens/s <= bandwidth / bytes touched per token).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/thread_pool.h"

namespace st {

// Wrapping sum of n 64-bit words (SIMD, dynamic dispatch); a pure streaming
// read used to measure bandwidth.
uint64_t StreamReadSum(const uint64_t* p, size_t n);

struct BandwidthResult {
  double median_gbps = 0;  // GB/s (1e9 bytes/s), median over passes
  double best_gbps = 0;
  size_t bytes = 0;        // buffer size read per pass
  int threads = 0;
  int passes = 0;
  size_t huge_page_bytes = 0;  // of the buffer, backed by 2 MiB pages
};

// Reads a `bytes`-sized buffer (far larger than caches; default 1 GiB)
// `passes` times, split over the pool's threads, and reports the median rate.
// The buffer is a HugePageArena (2 MiB pages where transparent huge pages
// can back it, like the engine's weights), allocated and touched once
// before timing. passes is at least
// 1 and bytes at least 1 MiB (smaller values are raised).
BandwidthResult MeasureReadBandwidth(ThreadPool& pool, size_t bytes = size_t{1} << 30,
                                     int passes = 7);

}  // namespace st
