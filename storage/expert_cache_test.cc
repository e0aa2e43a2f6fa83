// The expert cache over a real pack: replacement, locking, pinning, counters
// and read failures.
#include "storage/expert_cache.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "common/huge_page_arena.h"
#include "common/process_memory.h"
#include "gtest/gtest.h"
#include "storage/pack_test_util.h"
#include "storage/pack_writer.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

class ExpertCacheTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new st::testing::TempDir();
    auto m = st::testing::SynthModel(dir_->path(), "tiny", DType::kQ8_0);
    ASSERT_TRUE(m.ok()) << m.status();
    gguf_ = new std::string(*m);
    ASSERT_TRUE(WritePack({.gguf_path = *m, .progress = false}).ok());
  }
  static void TearDownTestSuite() {
    delete gguf_;
    delete dir_;
  }
  std::unique_ptr<ExpertCache> Make(int slots, const std::string& pack_path = "") {
    auto pack = ExpertPack::Open(pack_path.empty() ? DefaultPackPath(*gguf_) : pack_path);
    EXPECT_TRUE(pack.ok()) << pack.status();
    auto src = OpenExpertSource(*pack, {.kind = SourceKind::kPread, .pread_threads = 2});
    EXPECT_TRUE(src.ok()) << src.status();
    auto cache = ExpertCache::Create(std::move(*src), slots);
    EXPECT_TRUE(cache.ok()) << cache.status();
    return std::move(*cache);
  }
  // The record as the memory source reads it: the expected bytes.
  std::string Record(int layer, int expert) {
    auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
    auto src = OpenExpertSource(*pack, {.kind = SourceKind::kMemory});
    st::testing::AlignedBuffer buf((*pack)->header().record_size);
    EXPECT_TRUE((*src)->Read(layer, expert, buf.get()).ok());
    return std::string(buf.get(), (*pack)->header().record_size);
  }
  static st::testing::TempDir* dir_;
  static std::string* gguf_;
};
st::testing::TempDir* ExpertCacheTest::dir_ = nullptr;
std::string* ExpertCacheTest::gguf_ = nullptr;

// A synchronous source, as mmap and memory are: each read happens inside
// Submit, here taking 5 ms.
class SlowSubmitSource : public ExpertSource {
 public:
  SlowSubmitSource(std::shared_ptr<const ExpertPack> pack, std::unique_ptr<ExpertSource> inner)
      : ExpertSource(std::move(pack)), inner_(std::move(inner)) {}
  std::string_view name() const override { return "slow"; }
  absl::Status Wait(ReadId id) override { return inner_->Wait(id); }
  bool Poll(ReadId id) override { return inner_->Poll(id); }

 protected:
  std::vector<ReadId> SubmitValid(absl::Span<const ReadRequest> requests) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return *inner_->Submit(requests);
  }

 private:
  std::unique_ptr<ExpertSource> inner_;
};

// Stall time counts a synchronous source's reads: with mmap (reads inside
// Submit) the cache had reported no stall at all.
TEST_F(ExpertCacheTest, StallCountsReadsInsideSubmit) {
  auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
  ASSERT_TRUE(pack.ok()) << pack.status();
  auto memory = OpenExpertSource(*pack, {.kind = SourceKind::kMemory});
  ASSERT_TRUE(memory.ok()) << memory.status();
  auto cache = ExpertCache::Create(std::make_unique<SlowSubmitSource>(*pack, std::move(*memory)), 2);
  ASSERT_TRUE(cache.ok()) << cache.status();
  for (int e = 0; e < 4; ++e) {
    ASSERT_TRUE((*cache)->Acquire(0, e).ok());
    (*cache)->Release(0, e);
  }
  EXPECT_EQ((*cache)->counters().reads, 4u);
  EXPECT_GE((*cache)->counters().stall_seconds, 0.020);
}

TEST_F(ExpertCacheTest, AcquireReturnsTheRecord) {
  auto cache = Make(2);
  for (auto [l, e] : {std::pair{0, 0}, {3, 7}, {1, 4}}) {
    auto rec = cache->Acquire(l, e);
    ASSERT_TRUE(rec.ok()) << rec.status();
    EXPECT_EQ(std::memcmp(*rec, Record(l, e).data(), cache->slot_bytes()), 0);
    cache->Release(l, e);
  }
  EXPECT_EQ(cache->counters().reads, 3u);
  EXPECT_EQ(cache->counters().evictions, 1u);
  EXPECT_EQ(cache->counters().bytes_read, 3 * cache->slot_bytes());
}

// The cache registers its slots with the source: io_uring reads them with
// READ_FIXED (no per-read pinning of the slot's pages).
TEST_F(ExpertCacheTest, IoUringReadsIntoRegisteredSlots) {
  auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
  ASSERT_TRUE(pack.ok());
  rlimit lock{};
  if (geteuid() != 0 && getrlimit(RLIMIT_MEMLOCK, &lock) == 0 && lock.rlim_cur != RLIM_INFINITY &&
      lock.rlim_cur < 2 * (*pack)->header().record_size) {
    GTEST_SKIP() << "RLIMIT_MEMLOCK " << lock.rlim_cur << " is too small to register the slots";
  }
  auto src = OpenExpertSource(*pack, {.kind = SourceKind::kIoUring});
  ASSERT_TRUE(src.ok()) << src.status();
  auto cache = ExpertCache::Create(std::move(*src), 2);
  ASSERT_TRUE(cache.ok()) << cache.status();
  for (auto [l, e] : {std::pair{0, 0}, {3, 7}, {1, 4}}) {
    auto rec = (*cache)->Acquire(l, e);
    ASSERT_TRUE(rec.ok()) << rec.status();
    EXPECT_EQ(std::memcmp(*rec, Record(l, e).data(), (*cache)->slot_bytes()), 0);
    (*cache)->Release(l, e);
  }
  EXPECT_EQ((*cache)->source().fixed_reads(), 3u);
  // A cache of every record reads each once: nothing registered, nothing pinned.
  auto all_src = OpenExpertSource(*pack, {.kind = SourceKind::kIoUring});
  ASSERT_TRUE(all_src.ok());
  auto all = ExpertCache::Create(std::move(*all_src), static_cast<int>((*pack)->header().record_count));
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_TRUE((*all)->Acquire(1, 4).ok());
  (*all)->Release(1, 4);
  EXPECT_EQ((*all)->source().fixed_reads(), 0u);
}

// Sparse rows are read at random inside a slot: its memory is 2 MiB aligned
// and advised for transparent huge pages wherever the kernel offers them.
TEST_F(ExpertCacheTest, SlotsLiveInHugePageMemory) {
  auto cache = Make(3);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(cache->slot_memory()) % (2u << 20), 0u);
  EXPECT_EQ(cache->huge_pages_advised(), TransparentHugePagesAvailable());
}

TEST_F(ExpertCacheTest, LeastRecentlyReleasedIsEvictedFirst) {
  auto cache = Make(3);
  for (int e : {0, 1, 2}) {
    ASSERT_TRUE(cache->Acquire(0, e).ok());
    cache->Release(0, e);
  }
  ASSERT_TRUE(cache->Acquire(0, 0).ok());  // 0 becomes most recent
  cache->Release(0, 0);
  ASSERT_TRUE(cache->Acquire(0, 3).ok());  // evicts 1
  cache->Release(0, 3);
  EXPECT_TRUE(cache->IsResident(0, 0));
  EXPECT_FALSE(cache->IsResident(0, 1));
  EXPECT_TRUE(cache->IsResident(0, 2));
  EXPECT_TRUE(cache->IsResident(0, 3));
}

// Decode passes over the layers in a cycle. Here each of the tiny model's
// 4 layers uses the same experts every token, and the cache holds fewer
// than a token uses: LRU evicts each record just before it is needed again
// (no hits at all), while evicting the layer that comes up last keeps some.
// With top-2 a miss must not evict the layer's other expert, resident and
// wanted by the same call (every read is then a miss's own).
TEST_F(ExpertCacheTest, ACycleLongerThanTheCacheStillHits) {
  for (const int top_k : {1, 2}) {
    for (const bool cyclic : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "top-" << top_k << (cyclic ? " cyclic" : " LRU"));
      auto cache = Make(top_k == 1 ? 3 : 6);
      if (cyclic) cache->set_cycle(4 * top_k);
      for (int token = 0; token < 10; ++token) {
        for (int layer = 0; layer < 4; ++layer) {
          const int experts[2] = {layer + 1, layer + 3};
          const absl::Span<const int> chosen(experts, top_k);
          ASSERT_TRUE(cache->Prefetch(layer, chosen, /*lock=*/true, /*demand=*/true).ok());
          for (int e : chosen) ASSERT_TRUE(cache->Acquire(layer, e).ok());
          for (int e : chosen) cache->Release(layer, e);
        }
      }
      const ExpertCacheCounters& c = cache->counters();
      EXPECT_EQ(c.requests, 40u * top_k);
      EXPECT_EQ(c.reads, c.misses);
      if (cyclic) {
        EXPECT_GE(c.hits, 9u * 2 * top_k) << "after the first token, half the experts hit";
      } else {
        EXPECT_EQ(c.hits, 0u);
      }
    }
  }
}

// Routing that changes between tokens (each expert kept with probability
// 0.6), top-2 of 8 on 4 layers, 6 slots: a miss never evicts a record the
// same call wants (every expert resident before the call is a hit).
TEST_F(ExpertCacheTest, AMissNeverEvictsAnExpertTheSameStepWants) {
  auto cache = Make(6);
  cache->set_cycle(4 * 2);
  std::mt19937 rng(5);
  std::vector<std::array<int, 2>> chosen(4, {0, 1});
  for (int token = 0; token < 200; ++token) {
    for (int layer = 0; layer < 4; ++layer) {
      auto& c = chosen[layer];
      for (int j = 0; j < 2; ++j) {
        if (std::uniform_real_distribution<double>(0, 1)(rng) < 0.6) continue;
        int e;
        do e = static_cast<int>(rng() % 8); while (e == c[0] || e == c[1]);
        c[j] = e;
      }
      const uint64_t resident = cache->IsResident(layer, c[0]) + cache->IsResident(layer, c[1]);
      const uint64_t hits = cache->counters().hits;
      ASSERT_TRUE(cache->Prefetch(layer, c, /*lock=*/true, /*demand=*/true).ok());
      ASSERT_EQ(cache->counters().hits - hits, resident) << "token " << token << " layer " << layer;
      for (int e : c) ASSERT_TRUE(cache->Acquire(layer, e).ok());
      for (int e : c) cache->Release(layer, e);
    }
  }
  EXPECT_EQ(cache->counters().reads, cache->counters().misses);
  EXPECT_GT(cache->counters().hits, 0u);
}

TEST_F(ExpertCacheTest, LockedAndPinnedSlotsAreNeverEvicted) {
  auto cache = Make(3);
  ASSERT_TRUE(cache->Pin({{{2, 2}}}, 1).ok());
  auto n = cache->Prefetch(1, {{5, 6}}, /*lock=*/true, /*demand=*/true);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2);
  // Every slot is pinned or locked: nothing can be loaded.
  auto rec = cache->Acquire(0, 0);
  EXPECT_EQ(rec.status().code(), absl::StatusCode::kResourceExhausted) << rec.status();
  auto skipped = cache->Prefetch(0, {{1}}, true);
  ASSERT_TRUE(skipped.ok());
  EXPECT_EQ(*skipped, 0);
  EXPECT_EQ(cache->counters().prefetch_skipped, 1u);
  // Locked ones are served without new reads.
  const uint64_t reads = cache->counters().reads;
  ASSERT_TRUE(cache->Acquire(1, 5).ok());
  ASSERT_TRUE(cache->Acquire(1, 6).ok());
  EXPECT_EQ(cache->counters().reads, reads);
  cache->Release(1, 5);
  ASSERT_TRUE(cache->Acquire(0, 0).ok());  // evicts (1, 5), the only unlocked one
  EXPECT_FALSE(cache->IsResident(1, 5));
  EXPECT_TRUE(cache->IsResident(1, 6));
  EXPECT_TRUE(cache->IsResident(2, 2));
  EXPECT_EQ(cache->counters().requests, 2u);
  EXPECT_EQ(cache->counters().misses, 2u);
}

TEST_F(ExpertCacheTest, PinRefusesToFillTheCache) {
  auto cache = Make(2);
  absl::Status s = cache->Pin({{{0, 0}, {0, 1}}}, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(cache->Pin({{{0, 0}}}, 1).ok());
}

TEST_F(ExpertCacheTest, UnlockedPrefetchIsEvictableOnceLanded) {
  auto cache = Make(1);
  ASSERT_TRUE(cache->Prefetch(2, {{3}}, /*lock=*/false).ok());  // a speculative guess
  auto rec = cache->Acquire(0, 1);  // must wait for the guess, then evict it
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(std::memcmp(*rec, Record(0, 1).data(), cache->slot_bytes()), 0);
  EXPECT_FALSE(cache->IsResident(2, 3));
}

// Wrong guesses not read yet are dropped: their slots are free, they no
// longer count as reads, and a later demand reads them as any miss. (io_uring
// with one 4 KiB chunk in flight: the guesses wait behind six records
// needed now, 54 disk reads, and the first guess's 9 more.)
TEST_F(ExpertCacheTest, DropGuessesFreesTheirSlotsAndUncountsTheirReads) {
  auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
  ASSERT_TRUE(pack.ok());
  const uint64_t record = (*pack)->header().record_size;
  ASSERT_GE(record, 3 * kPackAlignment);
  auto src = OpenIoUringSource(*pack, {.queue_depth = 1, .read_chunk_bytes = kPackAlignment});
  ASSERT_TRUE(src.ok()) << src.status();
  auto made = ExpertCache::Create(std::move(*src), 12);
  ASSERT_TRUE(made.ok()) << made.status();
  ExpertCache& cache = **made;
  const std::vector<int> needed = {0, 1, 2, 3, 4, 5};
  ASSERT_EQ(*cache.Prefetch(0, needed, /*lock=*/true, /*demand=*/true), 6);
  ASSERT_EQ(*cache.Prefetch(1, {{0, 1, 2}}, /*lock=*/false, /*demand=*/false, /*guess=*/true), 3);
  // Layer 1 turned out to need expert 1: (1, 2) has certainly not started,
  // (1, 0) very likely not.
  const int dropped = cache.DropGuesses(1, {{1}});
  EXPECT_GE(dropped, 1);
  EXPECT_LE(dropped, 2);
  EXPECT_EQ(cache.IsResident(1, 0), dropped == 1);
  EXPECT_TRUE(cache.IsResident(1, 1));
  EXPECT_FALSE(cache.IsResident(1, 2));
  EXPECT_EQ(cache.resident(), 9 - dropped);
  EXPECT_EQ(cache.counters().reads, 9u - dropped);
  EXPECT_EQ(cache.counters().bytes_read, (9u - dropped) * record);
  EXPECT_EQ(cache.counters().guesses_dropped, static_cast<uint64_t>(dropped));
  for (int e : needed) {
    auto rec = cache.Acquire(0, e);
    ASSERT_TRUE(rec.ok()) << rec.status();
    EXPECT_EQ(std::memcmp(*rec, Record(0, e).data(), record), 0) << e;
    cache.Release(0, e);
  }
  for (int e : {1, 2}) {  // the kept guess, and a dropped one read as a miss
    auto rec = cache.Acquire(1, e);
    ASSERT_TRUE(rec.ok()) << rec.status();
    EXPECT_EQ(std::memcmp(*rec, Record(1, e).data(), record), 0) << e;
    cache.Release(1, e);
  }
  EXPECT_EQ(cache.counters().reads, 10u - dropped);
}

TEST_F(ExpertCacheTest, CorruptRecordIsDataLossAndLeavesNoSlot) {
  auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
  ASSERT_TRUE(pack.ok());
  const PackHeader& h = (*pack)->header();
  const std::string bad = dir_->File("flipped.stpack");
  st::testing::CopyModified(DefaultPackPath(*gguf_), bad, h.RecordOffset(1, 3) + 2 * h.matrix_stride + 5);
  auto cache = Make(2, bad);
  auto rec = cache->Acquire(1, 3);
  EXPECT_EQ(rec.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(rec.status().message().find("layer 1 expert 3"), std::string::npos) << rec.status();
  EXPECT_FALSE(cache->IsResident(1, 3));
  EXPECT_EQ(cache->resident(), 0);
  EXPECT_TRUE(cache->Acquire(1, 2).ok());  // the cache keeps working
}

// A speculative read that fails as it lands frees its slot, and the next
// miss takes that slot instead of giving up because every other one is
// locked.
TEST_F(ExpertCacheTest, ASlotFreedByAFailedReadServesTheNextMiss) {
  auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
  ASSERT_TRUE(pack.ok());
  const PackHeader& h = (*pack)->header();
  const std::string bad = dir_->File("flipped-speculative.stpack");
  st::testing::CopyModified(DefaultPackPath(*gguf_), bad, h.RecordOffset(1, 3) + 5);
  auto cache = Make(2, bad);
  ASSERT_TRUE(cache->Acquire(0, 0).ok());  // held by the step: one slot left
  ASSERT_TRUE(cache->Prefetch(1, {{3}}, /*lock=*/false).ok());  // a guess that will fail
  while (!cache->IsReady(1, 3)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto rec = cache->Acquire(0, 1);
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(std::memcmp(*rec, Record(0, 1).data(), cache->slot_bytes()), 0);
  EXPECT_FALSE(cache->IsResident(1, 3));
  EXPECT_TRUE(cache->IsResident(0, 0));
}

// Experts locked by a step and let go before their reads landed (the step
// failed and released everything) become evictable once they land, like
// any other record; before, they held their slots until asked for again.
TEST_F(ExpertCacheTest, ReadsReleasedBeforeTheyLandAreEvictable) {
  auto cache = Make(3);
  ASSERT_TRUE(cache->Prefetch(0, {{0}}, /*lock=*/true).ok());
  cache->ReleaseAll();
  while (!cache->IsReady(0, 0)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (int e = 0; e < 6; ++e) {
    auto rec = cache->Acquire(1 + e % 2, e);
    ASSERT_TRUE(rec.ok()) << rec.status();
    cache->Release(1 + e % 2, e);
  }
  EXPECT_FALSE(cache->IsResident(0, 0));
  EXPECT_EQ(cache->resident(), 3);
}

// The slots are faulted in at creation (nothing first touched while
// decoding): RSS grows by the whole cache at once, before any read.
TEST_F(ExpertCacheTest, SlotsAreResidentFromCreation) {
  auto pack = ExpertPack::Open(DefaultPackPath(*gguf_));
  ASSERT_TRUE(pack.ok());
  const uint64_t record = (*pack)->header().record_size;
  const int slots = static_cast<int>(std::max<uint64_t>(8, (64ull << 20) / record));
  const uint64_t before = ReadProcessMemory().rss_bytes;
  auto cache = Make(slots);
  const uint64_t grown = ReadProcessMemory().rss_bytes - before;
  EXPECT_EQ(cache->counters().reads, 0u);
  EXPECT_GE(grown, cache->allocated_bytes() * 9 / 10)
      << "RSS grew " << grown << " for a cache of " << cache->allocated_bytes();
  auto rec = cache->Acquire(1, 2);  // and the slots work as before
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(std::memcmp(*rec, Record(1, 2).data(), record), 0);
}

// Preloaded experts are resident, unpinned, and leave the LRU coldest first
// (the first listed is the most recently used).
TEST_F(ExpertCacheTest, PreloadFillsTheLruHottestLast) {
  auto cache = Make(3);
  auto n = cache->Preload({{0, 1}, {2, 5}, {3, 3}, {1, 1}});  // one more than fits
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 3);
  EXPECT_TRUE(cache->IsResident(0, 1) && cache->IsResident(2, 5) && cache->IsResident(3, 3));
  EXPECT_FALSE(cache->IsResident(1, 1));
  ASSERT_TRUE(cache->Acquire(1, 0).ok());  // evicts the coldest preloaded one
  cache->Release(1, 0);
  EXPECT_FALSE(cache->IsResident(3, 3));
  EXPECT_TRUE(cache->IsResident(0, 1) && cache->IsResident(2, 5));
  auto rec = cache->Acquire(2, 5);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(std::memcmp(*rec, Record(2, 5).data(), cache->slot_bytes()), 0);
  EXPECT_EQ(cache->Preload({{9, 0}}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ExpertCacheTest, OutOfRangeIsInvalidArgument) {
  auto cache = Make(2);
  EXPECT_EQ(cache->Acquire(4, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache->Acquire(0, 8).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ExpertCache::Create(nullptr, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace st
