// Expert record reads through the io_uring source, as the expert cache
// issues them: into slot memory, `in_flight` records at a time, cycling
// over the pack's records (so the guest's page cache never serves them:
// O_DIRECT). Compares registered slot memory (READ_FIXED) with plain reads,
// on huge-page and on 4 KiB-page memory. Counters: submit_us is the time
// per record the caller spent in Submit (the forward thread's share: the
// kernel pins a plain read's pages there), GB/s the records' bytes over the
// wall time. The pack is ST_BENCH_PACK (e.g. models/bench/4b-q4_0.gguf.stpack);
// without it the benchmark is skipped.
#include <sys/mman.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/huge_page_arena.h"
#include "storage/expert_source.h"

namespace st {
namespace {

// Slot memory: a HugePageArena, or an anonymous mapping kept on 4 KiB pages.
// data() is null if it could not be mapped.
struct SlotMemory {
  std::unique_ptr<HugePageArena> arena;
  char* small = nullptr;
  size_t bytes = 0;
  SlotMemory(size_t n, bool huge) : bytes(n) {
    if (huge) {
      auto a = HugePageArena::Create(n);
      if (a.ok()) arena = *std::move(a);
    } else {
      void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p != MAP_FAILED) {
        small = static_cast<char*>(p);
        madvise(small, n, MADV_NOHUGEPAGE);
      }
    }
    if (data() == nullptr) return;
    for (size_t i = 0; i < n; i += 4096) data()[i] = 1;  // populated, as the cache is
  }
  ~SlotMemory() {
    if (small != nullptr) munmap(small, bytes);
  }
  char* data() const { return arena ? arena->data() : small; }
};

void BM_RecordReads(benchmark::State& state) {
  const char* path = std::getenv("ST_BENCH_PACK");
  if (path == nullptr) {
    state.SkipWithError("set ST_BENCH_PACK to an expert pack");
    return;
  }
  const bool registered = state.range(0) != 0, huge = state.range(1) != 0;
  const int in_flight = static_cast<int>(state.range(2));
  auto pack = ExpertPack::Open(path);
  if (!pack.ok()) {
    state.SkipWithError(std::string(pack.status().message()).c_str());
    return;
  }
  const PackHeader& h = (*pack)->header();
  constexpr int kSlots = 16;
  // Before the source: it is destroyed after it, so reads still in flight
  // when a failed Wait returns early land in mapped memory.
  SlotMemory memory(h.record_size * kSlots, huge);
  if (memory.data() == nullptr) {
    state.SkipWithError("cannot map the slot memory");
    return;
  }
  auto src = OpenExpertSource(*pack, {.kind = SourceKind::kIoUring, .register_buffers = registered});
  if (!src.ok()) {
    state.SkipWithError(std::string(src.status().message()).c_str());
    return;
  }
  if (absl::Status s = (*src)->RegisterMemory(memory.data(), memory.bytes); !s.ok()) {
    state.SkipWithError(std::string(s.message()).c_str());
    return;
  }
  // Records far apart, cycling: a stride coprime to the count.
  const uint64_t n = h.record_count, stride = n % 97 == 0 ? 101 : 97;
  uint64_t next = 0, reads = 0;
  double submit_s = 0;
  for (auto _ : state) {
    std::vector<ReadRequest> reqs(in_flight);
    for (int i = 0; i < in_flight; ++i) {
      const uint64_t r = next;
      next = (next + stride) % n;
      reqs[i] = {.layer = static_cast<int>(r / h.n_experts), .expert = static_cast<int>(r % h.n_experts),
                 .dst = memory.data() + (reads + i) % kSlots * h.record_size};
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto ids = (*src)->Submit(reqs);
    submit_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!ids.ok()) {
      state.SkipWithError(std::string(ids.status().message()).c_str());
      return;
    }
    for (ReadId id : *ids) {
      if (absl::Status s = (*src)->Wait(id); !s.ok()) {
        state.SkipWithError(std::string(s.message()).c_str());
        return;
      }
    }
    reads += in_flight;
  }
  state.SetBytesProcessed(static_cast<int64_t>(reads * h.record_size));
  state.counters["submit_us"] = reads ? submit_s * 1e6 / reads : 0;
  state.counters["fixed"] = static_cast<double>((*src)->fixed_reads());
}
BENCHMARK(BM_RecordReads)
    ->ArgNames({"registered", "huge", "in_flight"})
    ->ArgsProduct({{0, 1}, {1, 0}, {1, 4}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace st
