#include "common/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>

#include "common/cpu_affinity.h"
#include "glog/logging.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ST_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
// `yield` is a no-op on most Arm cores; an instruction barrier waits a few
// tens of cycles without a syscall (what Rust's spin_loop hint does).
#define ST_CPU_RELAX() __asm__ __volatile__("isb" ::: "memory")
#else
#define ST_CPU_RELAX() std::this_thread::yield()
#endif

namespace st {
namespace {

// Spins until done() or `micros` elapse; returns done().
template <typename Pred>
bool SpinUntil(Pred done, int micros) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(micros);
  for (int i = 0;; ++i) {
    if (done()) return true;
    ST_CPU_RELAX();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) return done();
  }
}

}  // namespace

namespace {

int ThreadCount(int num_threads, const std::vector<int>& cpus) {
  if (num_threads > 0) return num_threads;
  if (!cpus.empty()) return static_cast<int>(cpus.size());
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

void Pin(int cpu) {
  if (absl::Status s = PinCurrentThread(cpu); !s.ok()) LOG(WARNING) << s.message();
}

std::atomic<uint64_t> next_pool_id{1};
// The pool whose cpus[0] this thread was bound to (0 = none).
thread_local uint64_t pinned_for_pool = 0;

}  // namespace

ThreadPool::ThreadPool(int num_threads, std::vector<int> cpus)
    : cpus_(std::move(cpus)),
      num_threads_(ThreadCount(num_threads, cpus_)),
      id_(next_pool_id.fetch_add(1, std::memory_order_relaxed)),
      runs_(num_threads_) {
  workers_.reserve(num_threads_ - 1);
  for (int i = 1; i < num_threads_; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

namespace {

constexpr uint64_t Pack(uint64_t lo, uint64_t hi) { return lo | hi << 32; }

// Claims the first (front) or last (!front) chunk of `run`; false if empty.
bool Claim(std::atomic<uint64_t>& run, bool front, size_t* chunk) {
  uint64_t v = run.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t lo = v & 0xFFFFFFFFu, hi = v >> 32;
    if (lo >= hi) return false;
    const uint64_t next = front ? Pack(lo + 1, hi) : Pack(lo, hi - 1);
    if (run.compare_exchange_weak(v, next, std::memory_order_relaxed)) {
      *chunk = front ? lo : hi - 1;
      return true;
    }
  }
}

}  // namespace

void ThreadPool::RunChunk(size_t c) {
  const size_t n_grains = job_n_ / job_grain_ + (job_n_ % job_grain_ != 0);
  // First grain of chunk c: floor(n_grains * c / chunks), computed as
  // q * c + floor(r * c / chunks) so that it cannot overflow for any n.
  const size_t chunks = job_chunks_;
  const size_t q = n_grains / chunks;
  const size_t r = n_grains % chunks;
  auto first_grain = [&](size_t k) { return q * k + r * k / chunks; };
  const size_t begin = first_grain(c) * job_grain_;  // < job_n_
  const size_t end_grain = first_grain(c + 1);
  const size_t end = end_grain >= n_grains ? job_n_ : end_grain * job_grain_;
  if (begin < end) (*job_)(begin, end);
}

void ThreadPool::RunChunks(int self) {
  size_t c;
  while (Claim(runs_[self].range, /*front=*/true, &c)) RunChunk(c);
  // Own run done: take from the back of the others', nearest thread first.
  for (int k = 1; k < num_threads_; ++k) {
    std::atomic<uint64_t>& other = runs_[(self + k) % num_threads_].range;
    while (Claim(other, /*front=*/false, &c)) RunChunk(c);
  }
}

void ThreadPool::ParallelFor(size_t n, const std::function<void(size_t, size_t)>& fn,
                             size_t grain, size_t chunks_per_thread) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  if (num_threads_ == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  job_grain_ = grain;
  const size_t n_grains = n / grain + (n % grain != 0);
  job_chunks_ = std::min<size_t>(
      {n_grains, static_cast<size_t>(num_threads_) * std::max<size_t>(chunks_per_thread, 1),
       size_t{0xFFFFFFFFu}});
  for (int t = 0; t < num_threads_; ++t) {  // thread t owns chunks [C t / T, C (t+1) / T)
    runs_[t].range.store(Pack(job_chunks_ * t / num_threads_, job_chunks_ * (t + 1) / num_threads_),
                         std::memory_order_relaxed);
  }
  parked_.store(false, std::memory_order_relaxed);
  const uint64_t gen = generation_.load(std::memory_order_relaxed) + 1;  // only we write it
  const uint64_t id = (gen & 0xFFFFFFFFu) << 32;
  job_state_.store(id, std::memory_order_release);       // open: workers may join
  generation_.store(gen, std::memory_order_seq_cst);     // wakes spinning workers
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    wake_.notify_all();
  }
  RunChunks(0);
  // Every chunk is claimed: close the job so no late worker joins, then wait
  // for the joined ones to finish theirs.
  job_state_.fetch_or(kClosed, std::memory_order_seq_cst);
  auto all_done = [this] {
    return (job_state_.load(std::memory_order_seq_cst) & kCountMask) == 0;
  };
  if (!SpinUntil(all_done, kSpinMicros)) {
    std::unique_lock<std::mutex> lock(mu_);
    caller_sleeping_.store(true, std::memory_order_seq_cst);
    done_.wait(lock, all_done);
    caller_sleeping_.store(false, std::memory_order_relaxed);
  }
  job_ = nullptr;
}

void ThreadPool::BindCaller() {
  if (!cpus_.empty() && pinned_for_pool != id_) {
    Pin(cpus_[0]);
    pinned_for_pool = id_;
  }
}

void ThreadPool::Park() {
  if (num_threads_ > 1) parked_.store(true, std::memory_order_relaxed);
}

void ThreadPool::WorkerLoop(int index) {
  if (!cpus_.empty()) Pin(cpus_[index % cpus_.size()]);
  uint64_t seen = 0;
  for (;;) {
    auto has_work = [&] {
      return stop_.load(std::memory_order_acquire) ||
             generation_.load(std::memory_order_seq_cst) != seen;
    };
    // Parked: stop spinning early. The sleep below re-checks has_work under
    // the lock, so a ParallelFor racing with Park is never missed.
    auto spin_done = [&] { return has_work() || parked_.load(std::memory_order_relaxed); };
    bool woken = SpinUntil(spin_done, kSpinMicros) && has_work();
    if (!woken && !cpus_.empty()) {  // pinned: yield before blocking
      const auto end =
          std::chrono::steady_clock::now() + std::chrono::microseconds(kPinnedYieldMicros);
      while (!(woken = has_work()) && std::chrono::steady_clock::now() < end) sched_yield();
    }
    if (!woken) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      wake_.wait(lock, has_work);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    const uint64_t id = (seen & 0xFFFFFFFFu) << 32;
    uint64_t state = job_state_.load(std::memory_order_relaxed);
    bool joined = false;
    while ((state & ~kCountMask & ~kClosed) == id && (state & kClosed) == 0) {
      if (job_state_.compare_exchange_weak(state, state + 1, std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
        joined = true;
        break;
      }
    }
    if (!joined) continue;  // closed (or already superseded): nothing left for us
    RunChunks(index);
    const uint64_t before = job_state_.fetch_sub(1, std::memory_order_seq_cst);
    if ((before & kCountMask) == 1 && caller_sleeping_.load(std::memory_order_seq_cst)) {
      std::lock_guard<std::mutex> lock(mu_);
      done_.notify_one();
    }
  }
}

}  // namespace st
