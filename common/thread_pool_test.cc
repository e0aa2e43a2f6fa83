#include "common/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <sched.h>

#include "common/cpu_affinity.h"
#include "gtest/gtest.h"

namespace st {
namespace {

using Range = std::pair<size_t, size_t>;

// Runs one ParallelFor and returns its ranges, sorted.
std::vector<Range> Ranges(ThreadPool& pool, size_t n, size_t grain) {
  std::mutex mu;
  std::vector<Range> ranges;
  pool.ParallelFor(
      n,
      [&](size_t begin, size_t end) {
        std::lock_guard<std::mutex> lock(mu);
        ranges.emplace_back(begin, end);
      },
      grain);
  std::sort(ranges.begin(), ranges.end());
  return ranges;
}

TEST(ThreadPoolTest, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 4, 7}) {
    ThreadPool pool(threads);
    ASSERT_EQ(pool.num_threads(), threads);
    for (size_t n : {0, 1, 2, 3, 5, 7, 8, 64, 100, 1000, 1001}) {
      for (size_t grain : {0, 1, 2, 3, 7, 64, 2000}) {
        SCOPED_TRACE(testing::Message()
                     << "threads=" << threads << " n=" << n << " grain=" << grain);
        std::vector<std::atomic<int>> hits(n);
        std::atomic<int> calls{0};
        pool.ParallelFor(
            n,
            [&](size_t begin, size_t end) {
              ++calls;
              EXPECT_LT(begin, end);
              EXPECT_LE(end, n);
              // Ranges start on grain boundaries (grain 0 is treated as 1).
              EXPECT_EQ(begin % std::max<size_t>(grain, 1), 0u);
              for (size_t i = begin; i < end; ++i) ++hits[i];
            },
            grain);
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i;
        EXPECT_LE(calls.load(), threads * ThreadPool::kChunksPerThread);
        if (n == 0) {
          EXPECT_EQ(calls.load(), 0);
        }
      }
    }
  }
}

// chunks_per_thread sets the split (min(ceil(n / grain), threads * cpt)
// chunks, balanced within a grain), whichever thread runs which chunk.
TEST(ThreadPoolTest, ChunksPerThreadSetsTheSplit) {
  ThreadPool pool(2);
  for (size_t cpt : {1, 4, 50, 1000}) {
    std::mutex mu;
    std::vector<Range> ranges;
    pool.ParallelFor(
        1000,
        [&](size_t begin, size_t end) {
          std::lock_guard<std::mutex> lock(mu);
          ranges.emplace_back(begin, end);
        },
        /*grain=*/1, cpt);
    std::sort(ranges.begin(), ranges.end());
    const size_t chunks = std::min<size_t>(1000, 2 * cpt);
    ASSERT_EQ(ranges.size(), chunks) << "cpt " << cpt;
    size_t next = 0;
    for (const Range& r : ranges) {
      EXPECT_EQ(r.first, next);
      EXPECT_GE(r.second - r.first, 1000 / chunks);
      EXPECT_LE(r.second - r.first, 1000 / chunks + 1);
      next = r.second;
    }
    EXPECT_EQ(next, 1000u);
  }
}

// A thread runs its own run of chunks front to back, then takes the others'
// from the back: while the caller is held in its first chunk, the worker
// runs its own chunks 4..7 in order, then the caller's 3, 2, 1.
TEST(ThreadPoolTest, OwnRunFrontToBackThenOthersFromTheBack) {
  ThreadPool pool(2);
  const std::thread::id caller = std::this_thread::get_id();
  std::mutex mu;
  std::vector<size_t> worker_order;
  pool.ParallelFor(
      8,
      [&](size_t begin, size_t) {
        if (std::this_thread::get_id() != caller) {
          std::lock_guard<std::mutex> lock(mu);
          worker_order.push_back(begin);
          return;
        }
        if (begin != 0) return;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (std::chrono::steady_clock::now() < deadline) {
          {
            std::lock_guard<std::mutex> lock(mu);
            if (worker_order.size() == 7) return;
          }
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
      },
      /*grain=*/1, /*chunks_per_thread=*/4);
  if (worker_order.size() != 7) GTEST_SKIP() << "the worker was not scheduled in 5 s";
  EXPECT_EQ(worker_order, (std::vector<size_t>{4, 5, 6, 7, 3, 2, 1}));
}

TEST(ThreadPoolTest, ForEachItemRunsEveryItemExactlyOnce) {
  ThreadPool pool(3);
  for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
    for (size_t n : {0, 1, 2, 7, 500}) {
      std::vector<std::atomic<int>> runs(n);
      ForEachItem(n, p, [&](size_t i) { runs[i].fetch_add(1); });
      for (size_t i = 0; i < n; ++i) EXPECT_EQ(runs[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ThreadPoolTest, SplitIsAPureFunctionOfNAndThreads) {
  ThreadPool pool(4);
  for (size_t n : {1, 5, 999, 4096}) {
    const std::vector<Range> first = Ranges(pool, n, 8);
    for (int rep = 0; rep < 20; ++rep) EXPECT_EQ(Ranges(pool, n, 8), first) << n;
  }
  // Fewer grains than threads: one range per grain, the rest idle.
  EXPECT_EQ(Ranges(pool, 10, 4), (std::vector<Range>{{0, 4}, {4, 8}, {8, 10}}));
  // grain > n: one range.
  EXPECT_EQ(Ranges(pool, 10, 100), (std::vector<Range>{{0, 10}}));
}

TEST(ThreadPoolTest, SumsEqualSerialOverManyRepeatedCalls) {
  ThreadPool pool(3);
  for (int rep = 0; rep < 2000; ++rep) {
    const size_t n = 1 + static_cast<size_t>(rep) * 37 % 5000;
    std::atomic<uint64_t> sum{0};
    pool.ParallelFor(n, [&](size_t begin, size_t end) {
      uint64_t local = 0;
      for (size_t i = begin; i < end; ++i) local += i * i;
      sum += local;
    });
    uint64_t serial = 0;
    for (size_t i = 0; i < n; ++i) serial += i * i;
    ASSERT_EQ(sum.load(), serial) << "rep " << rep;
  }
}

TEST(ThreadPoolTest, UsesWorkerThreadsAndTheCaller) {
  ThreadPool pool(4);
  std::mutex mu;
  std::set<std::thread::id> seen;
  std::condition_variable all_in;
  // Each thread's first chunk waits (up to 10 s) until 4 distinct threads
  // hold a chunk; 16 chunks, so every thread can claim one.
  pool.ParallelFor(4000, [&](size_t, size_t) {
    std::unique_lock<std::mutex> lock(mu);
    seen.insert(std::this_thread::get_id());
    all_in.notify_all();
    all_in.wait_for(lock, std::chrono::seconds(10), [&] { return seen.size() == 4; });
  });
  EXPECT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen.count(std::this_thread::get_id()), 1u);
}

TEST(ThreadPoolTest, PoolOfOneRunsInlineOnTheCaller) {
  ThreadPool pool(1);
  EXPECT_EQ(pool.num_threads(), 1);
  const std::thread::id caller = std::this_thread::get_id();
  std::vector<Range> ranges;
  pool.ParallelFor(100, [&](size_t begin, size_t end) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    ranges.emplace_back(begin, end);
  });
  EXPECT_EQ(ranges, (std::vector<Range>{{0, 100}}));
}

TEST(ThreadPoolTest, NonPositiveThreadCountMeansHardwareConcurrency) {
  ThreadPool pool(0);
  EXPECT_EQ(pool.num_threads(),
            static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  ThreadPool negative(-3);
  EXPECT_EQ(negative.num_threads(), pool.num_threads());
}

TEST(ThreadPoolTest, ParkedWorkersSleepAndWakeForTheNextJob) {
  ThreadPool pool(3);
  std::vector<int> out(3000, 0);
  for (int round = 1; round <= 200; ++round) {
    pool.ParallelFor(out.size(), [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) out[i] += 1;
    });
    pool.Park();
    // Every few rounds, let the workers actually fall asleep first.
    if (round % 20 == 0) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (pool.sleeping_workers() < 2 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
      EXPECT_EQ(pool.sleeping_workers(), 2);
    }
  }
  for (int v : out) ASSERT_EQ(v, 200);
  // Parking a pool of one, or twice in a row, is harmless.
  ThreadPool one(1);
  one.Park();
  pool.Park();
  EXPECT_EQ(Ranges(pool, 10, 1).size(), 10u);
}

// The CPUs the calling thread may run on now.
std::set<int> ThreadCpus() {
  const std::vector<int> cpus = AllowedCpus();
  return {cpus.begin(), cpus.end()};
}

TEST(ThreadPoolTest, PinnedPoolRunsOnItsCpusAndBindsOnlyACallerThatAsks) {
  const std::vector<int> allowed = AllowedCpus();
  ASSERT_FALSE(allowed.empty());
  // Listed out of order when there are two, to check the order is kept.
  const std::vector<int> cpus =
      allowed.size() >= 2 ? std::vector<int>{allowed[1], allowed[0]} : std::vector<int>{allowed[0]};
  // On a thread of its own: binding the caller must not pin gtest's thread.
  std::thread t([&] {
    ThreadPool pool(0, cpus);
    EXPECT_EQ(pool.num_threads(), static_cast<int>(cpus.size()));
    EXPECT_EQ(pool.cpus(), cpus);
    std::mutex mu;
    std::set<int> seen;
    std::vector<int> out(4096, 0);
    // An unbound caller (set-up work on some thread) keeps its affinity.
    pool.ParallelFor(out.size(), [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) out[i] += 1;
    });
    EXPECT_EQ(ThreadCpus().size(), allowed.size());
    pool.BindCaller();
    EXPECT_EQ(ThreadCpus(), std::set<int>{cpus[0]});  // the caller went to cpus[0]
    for (int round = 1; round < 50; ++round) {
      pool.ParallelFor(out.size(), [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i) out[i] += 1;
        std::lock_guard<std::mutex> lock(mu);
        seen.insert(sched_getcpu());
      });
      if (round % 10 == 0) pool.Park();
    }
    for (int v : out) ASSERT_EQ(v, 50);
    for (int c : seen) EXPECT_NE(std::find(cpus.begin(), cpus.end(), c), cpus.end()) << c;
    EXPECT_EQ(ThreadCpus(), std::set<int>{cpus[0]});
  });
  t.join();
  EXPECT_EQ(ThreadCpus().size(), allowed.size());  // this thread untouched
}

TEST(ThreadPoolTest, PinnedParkedWorkersFallAsleep) {
  const std::vector<int> allowed = AllowedCpus();
  ASSERT_FALSE(allowed.empty());
  std::thread t([&] {
    ThreadPool pool(3, {allowed[0]});  // three threads on one CPU
    std::vector<int> out(3000, 0);
    for (int round = 1; round <= 30; ++round) {
      pool.ParallelFor(out.size(), [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i) out[i] += 1;
      });
      pool.Park();
      if (round % 10 == 0) {  // past the yield window, both workers block
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (pool.sleeping_workers() < 2 && std::chrono::steady_clock::now() < deadline) {
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        EXPECT_EQ(pool.sleeping_workers(), 2);
      }
    }
    for (int v : out) ASSERT_EQ(v, 30);
  });
  t.join();
}

TEST(ThreadPoolTest, DestructorJoinsIdleAndUsedPools) {
  // Never used: workers may not even have reached their wait yet.
  for (int i = 0; i < 50; ++i) ThreadPool idle(4);
  // Used, then destroyed: all work is visible afterwards.
  std::vector<int> out(1000, 0);
  {
    auto pool = std::make_unique<ThreadPool>(5);
    pool->ParallelFor(out.size(), [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) out[i] = static_cast<int>(i) + 1;
    });
  }
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], static_cast<int>(i) + 1);
}

TEST(ThreadPoolTest, ChunksAreBalancedWithinOneGrain) {
  ThreadPool pool(4);
  const std::vector<Range> ranges = Ranges(pool, 1000, 1);
  ASSERT_EQ(ranges.size(), 4u * ThreadPool::kChunksPerThread);  // 16 chunks of 62 or 63
  for (const Range& r : ranges) {
    EXPECT_GE(r.second - r.first, 62u);
    EXPECT_LE(r.second - r.first, 63u);
  }
  const std::vector<Range> fours = Ranges(pool, 1000, 4);  // 250 grains in 16 chunks
  ASSERT_EQ(fours.size(), 16u);
  for (const Range& r : fours) {
    EXPECT_EQ(r.first % 4, 0u);
    EXPECT_GE(r.second - r.first, 60u);
    EXPECT_LE(r.second - r.first, 64u);
  }
}

}  // namespace
}  // namespace st
