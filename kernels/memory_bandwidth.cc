#include "kernels/memory_bandwidth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "common/huge_page_arena.h"

namespace st {

BandwidthResult MeasureReadBandwidth(ThreadPool& pool, size_t bytes, int passes) {
  passes = std::max(passes, 1);
  bytes = std::max<size_t>(bytes, size_t{1} << 20);
  const size_t n = bytes / sizeof(uint64_t);
  // In 2 MiB pages where the kernel allows, as the engine keeps its weights:
  // a buffer in 4 KiB pages measured ~46 GB/s on 2 threads here against
  // ~55 in huge pages (TLB misses), which made every roofline fraction
  // look ~20% better than it was. Heap memory if the arena cannot be made.
  absl::StatusOr<std::unique_ptr<HugePageArena>> arena = HugePageArena::Create(n * sizeof(uint64_t));
  std::unique_ptr<uint64_t[]> heap;
  uint64_t* buf = nullptr;
  if (arena.ok()) {
    buf = reinterpret_cast<uint64_t*>((*arena)->data());
  } else {
    heap.reset(new uint64_t[n]);
    buf = heap.get();
  }
  pool.ParallelFor(n, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) buf[i] = i;
  }, 4096);
  std::atomic<uint64_t> sink{0};
  std::vector<double> rates;
  for (int p = 0; p < passes; ++p) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.ParallelFor(n, [&](size_t b, size_t e) {
      sink.fetch_add(StreamReadSum(buf + b, e - b), std::memory_order_relaxed);
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
  r.huge_page_bytes = arena.ok() ? (*arena)->HugePageBytes() : 0;
  if (sink.load() == 42) r.passes = passes;  // keep the sums observable
  return r;
}

}  // namespace st
