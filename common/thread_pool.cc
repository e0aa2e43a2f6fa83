#include "common/thread_pool.h"

#include <algorithm>

namespace st {

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(num_threads > 0 ? num_threads
                                   : std::max(1u, std::thread::hardware_concurrency())) {
  workers_.reserve(num_threads_ - 1);
  for (int i = 1; i < num_threads_; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::RunShare(int index) {
  const size_t n_grains = job_n_ / job_grain_ + (job_n_ % job_grain_ != 0);
  // First grain of share i: floor(n_grains * i / num_threads), computed as
  // q * i + floor(r * i / num_threads) so that it cannot overflow for any n.
  const size_t threads = static_cast<size_t>(num_threads_);
  const size_t q = n_grains / threads;
  const size_t r = n_grains % threads;
  auto first_grain = [&](size_t i) { return q * i + r * i / threads; };
  const size_t begin = first_grain(static_cast<size_t>(index)) * job_grain_;  // < job_n_
  const size_t end_grain = first_grain(static_cast<size_t>(index) + 1);
  const size_t end = end_grain >= n_grains ? job_n_ : end_grain * job_grain_;
  if (begin < end) (*job_)(begin, end);
}

void ThreadPool::ParallelFor(size_t n, const std::function<void(size_t, size_t)>& fn,
                             size_t grain) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  if (num_threads_ == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    job_n_ = n;
    job_grain_ = grain;
    pending_ = num_threads_ - 1;
    ++generation_;
  }
  wake_.notify_all();
  RunShare(0);
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [this] { return pending_ == 0; });
  job_ = nullptr;
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    RunShare(index);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

}  // namespace st
