// A persistent pool of worker threads for data-parallel loops.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace st {

// Runs `fn(begin, end)` over a fixed split of [0, n) into chunks, executed by
// the calling thread plus `num_threads - 1` persistent workers. Threads are
// created once, in the constructor; a ParallelFor creates none.
//
// Each thread owns a contiguous run of the chunks and works through it front
// to back; a thread whose run is done takes chunks from the back of the
// others' runs, one at a time. Owning a contiguous run keeps each thread's
// reads one forward stream through memory (a weight matrix split by rows),
// which DRAM prefetchers and the kernels' software prefetch continue across
// chunk boundaries, so chunks can be small (a short wait for the last one)
// without restarting a stream each. Taking from the back keeps both cores busy
// when one thread is slowed (another process on its core, a cold cache),
// where a static share per thread would leave the others waiting at the end
// of every op.
//
// Thread-compatible: one ParallelFor at a time (calls from several threads
// must be serialized by the caller). The split of [0, n) is a pure function of
// n, grain and num_threads (which thread runs a chunk is not), so results
// never depend on scheduling as long as fn's output for a range depends only
// on the range.
//
// A worker joins a job only while it is open; once the caller has claimed
// the last chunk it closes the job and waits just for the workers that
// joined. A worker that is descheduled (shared machine) therefore never
// stalls the caller: its chunks go to the threads that are running.
//
// Latency: a decode step issues hundreds of small ParallelFors, so waking a
// sleeping thread (~5-20 us through a futex) each time would dominate. Idle
// workers and a waiting caller therefore spin for up to kSpinMicros on an
// atomic before blocking on a condition variable, unless Park() said that
// no work is coming soon.
//
// Pinning (`cpus` non-empty): worker i runs on cpus[i % size], and the
// thread that drives the pool's hot loop (the forward pass, a worker's
// Compute thread) binds itself to cpus[0] with BindCaller (threads it
// creates afterwards inherit that binding, as Linux threads do). Other
// threads may call ParallelFor unbound (set-up work on a main or RPC
// thread): their affinity is left alone, so threads they serve or create
// later are not held to one CPU. Idle pinned
// workers, once their spin is over (at once when parked), yield their CPU
// (sched_yield) for up to kPinnedYieldMicros before they block, so the core
// stays awake for the next step while any other thread on it runs first.
// That is for processes
// that share a host's cores in turns (a coordinator and a worker on one
// machine): each hands the cores to the other every layer step, and waking
// a halted core through a futex costs far more on a VM than a yield.
class ThreadPool {
 public:
  // num_threads <= 0 means one per entry of `cpus`, or
  // std::thread::hardware_concurrency() when `cpus` is empty. `cpus` must
  // be CPUs the process may use (common/cpu_affinity.h checks lists).
  explicit ThreadPool(int num_threads, std::vector<int> cpus = {});
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }
  const std::vector<int>& cpus() const { return cpus_; }

  // Calls fn(begin, end) on disjoint ranges covering [0, n). Ranges are
  // multiples of `grain` (except the last) so callers can keep cache lines or
  // quant blocks whole. Blocks until every range is done.
  // There are min(ceil(n / grain), num_threads * chunks_per_thread) chunks,
  // balanced within one grain.
  void ParallelFor(size_t n, const std::function<void(size_t begin, size_t end)>& fn,
                   size_t grain = 1, size_t chunks_per_thread = kChunksPerThread);

  static constexpr int kChunksPerThread = 4;

  // Binds the calling thread to cpus[0] (once per thread and pool; no-op
  // for a pool without `cpus`), so that it and worker 0's CPU never
  // compete: call it from the thread that issues the pool's frequent
  // ParallelFors, before the first.
  void BindCaller();

  // Tells idle workers to stop spinning and block now: the caller expects
  // no ParallelFor for a while (it waits on the network, say) and the cores
  // are better left to other threads or processes. The next ParallelFor
  // wakes them (one futex wake instead of a spin). Callable from the thread
  // that issues ParallelFor, between calls.
  void Park();
  // Workers blocked on the condition variable right now (for tests).
  int sleeping_workers() const { return sleepers_.load(std::memory_order_relaxed); }

 private:
  void WorkerLoop(int index);
  // Runs chunks until none is left: thread `self`'s own run first, then
  // chunks taken from the back of the others'.
  void RunChunks(int self);
  void RunChunk(size_t c);

  const std::vector<int> cpus_;
  const int num_threads_;
  const uint64_t id_;  // distinct per pool, for the callers' pinning
  std::vector<std::thread> workers_;

  static constexpr int kSpinMicros = 100;
  static constexpr int kPinnedYieldMicros = 3000;

  // generation_ is bumped after the job fields are written, to wake workers.
  // job_state_ = (job id << 32) | kClosed? | joined workers still running;
  // the caller stores (id << 32) (release) before bumping generation_, a
  // worker joins by a CAS adding 1 while the id matches and kClosed is
  // clear (acquire: it may then read the job fields) and leaves with a
  // release decrement. The caller sets kClosed after its own chunks and
  // waits for the count to reach 0. sleepers_/caller_sleeping_ say who is
  // blocked on a condition variable and must be notified under mu_.
  static constexpr uint64_t kClosed = uint64_t{1} << 31;
  static constexpr uint64_t kCountMask = kClosed - 1;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> job_state_{kClosed};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stop_{false};
  // Set by Park, cleared by ParallelFor: idle workers skip the spin.
  std::atomic<bool> parked_{false};

  // The current job; written before generation_ is bumped.
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t job_n_ = 0;
  size_t job_grain_ = 1;
  size_t job_chunks_ = 0;
  // Per thread, the chunks of its run not yet claimed: [lo, hi) packed as
  // lo | hi << 32, claimed by CAS at the front (owner) or back (others).
  struct alignas(64) Run {
    std::atomic<uint64_t> range{0};
  };
  std::vector<Run> runs_;
};

// Runs item(i) for every i in [0, n) on `pool` (inline when pool is null,
// single-threaded or n <= 1), each item its own chunk: a thread runs its
// contiguous run of items in order, then takes single items from the back of
// the others'. For up to a few hundred small work items, where ParallelFor's
// default split is too coarse; results must not depend on which thread runs
// an item.
template <typename Fn>
void ForEachItem(size_t n, ThreadPool* pool, const Fn& item) {
  if (pool == nullptr || pool->num_threads() == 1 || n <= 1) {
    for (size_t i = 0; i < n; ++i) item(i);
    return;
  }
  pool->ParallelFor(
      n,
      [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i) item(i);
      },
      /*grain=*/1, /*chunks_per_thread=*/n);
}

}  // namespace st
