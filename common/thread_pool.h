// A persistent pool of worker threads for data-parallel loops.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace st {

// Runs `fn(begin, end)` over a fixed split of [0, n) into chunks, executed by
// the calling thread plus `num_threads - 1` persistent workers, each thread
// claiming the next unclaimed chunk (an atomic counter) until none is left.
// Threads are created once, in the constructor; a ParallelFor creates none.
// Claiming keeps both cores busy when one thread is slowed (another process
// on its core, a cold cache), where a static share per thread would leave
// the others waiting at the end of every op.
//
// Thread-compatible: one ParallelFor at a time (calls from several threads
// must be serialized by the caller). The split of [0, n) is a pure function of
// n, grain and num_threads (which thread runs a chunk is not), so results
// never depend on scheduling as long as fn's output for a range depends only
// on the range.
//
// Latency: a decode step issues hundreds of small ParallelFors, so waking a
// sleeping thread (~5-20 us through a futex) each time would dominate. Idle
// workers and a waiting caller therefore spin for up to kSpinMicros on an
// atomic before blocking on a condition variable.
class ThreadPool {
 public:
  // num_threads <= 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) on disjoint ranges covering [0, n). Ranges are
  // multiples of `grain` (except the last) so callers can keep cache lines or
  // quant blocks whole. Blocks until every range is done.
  // There are min(ceil(n / grain), num_threads * kChunksPerThread) chunks,
  // balanced within one grain.
  void ParallelFor(size_t n, const std::function<void(size_t begin, size_t end)>& fn,
                   size_t grain = 1);

  static constexpr int kChunksPerThread = 4;

 private:
  void WorkerLoop(int index);
  void RunChunks();

  const int num_threads_;
  std::vector<std::thread> workers_;

  static constexpr int kSpinMicros = 100;

  // generation_ is bumped (release) after the job fields are written; a
  // worker that sees the new value (acquire) may read them. pending_ counts
  // workers still running the current job. sleepers_/caller_sleeping_ say who
  // is blocked on a condition variable and must be notified under mu_.
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stop_{false};

  // The current job; written before generation_ is bumped.
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t job_n_ = 0;
  size_t job_grain_ = 1;
  size_t job_chunks_ = 0;
  std::atomic<size_t> next_chunk_{0};
};

}  // namespace st
