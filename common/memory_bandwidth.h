// Measures the machine's sequential memory read bandwidth, the ceiling of
// decode speed on a CPU (tokens/s <= bandwidth / bytes touched per token).
#pragma once

#include <cstddef>

#include "common/thread_pool.h"

namespace st {

struct BandwidthResult {
  double median_gbps = 0;  // GB/s (1e9 bytes/s), median over passes
  double best_gbps = 0;
  size_t bytes = 0;        // buffer size read per pass
  int threads = 0;
  int passes = 0;
};

// Reads a `bytes`-sized buffer (far larger than caches; default 1 GiB)
// `passes` times, split over the pool's threads, and reports the median rate.
// The buffer is allocated and touched once before timing.
BandwidthResult MeasureReadBandwidth(ThreadPool& pool, size_t bytes = size_t{1} << 30,
                                     int passes = 7);

}  // namespace st
