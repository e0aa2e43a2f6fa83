#include "kernels/memory_bandwidth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace st {

BandwidthResult MeasureReadBandwidth(ThreadPool& pool, size_t bytes, int passes) {
  passes = std::max(passes, 1);
  bytes = std::max<size_t>(bytes, size_t{1} << 20);
  const size_t n = bytes / sizeof(uint64_t);
  std::unique_ptr<uint64_t[]> buf(new uint64_t[n]);
  pool.ParallelFor(n, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) buf[i] = i;
  }, 4096);
  std::atomic<uint64_t> sink{0};
  std::vector<double> rates;
  for (int p = 0; p < passes; ++p) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.ParallelFor(n, [&](size_t b, size_t e) {
      sink.fetch_add(StreamReadSum(buf.get() + b, e - b), std::memory_order_relaxed);
    }, 4096);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(n * sizeof(uint64_t) / s / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  BandwidthResult r;
  r.median_gbps = rates[rates.size() / 2];
  r.best_gbps = rates.back();
  r.bytes = n * sizeof(uint64_t);
  r.threads = pool.num_threads();
  r.passes = passes;
  if (sink.load() == 42) r.passes = passes;  // keep the sums observable
  return r;
}

}  // namespace st
