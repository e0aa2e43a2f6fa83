// The expert cache: a fixed number of record-sized slots in RAM holding
// expert records (gate, up, down^T) read from a pack through an ExpertSource.
//
//   ExpertCache cache(source, n_slots);
//   cache.Prefetch(layer, {3, 7, 9, 12}, /*lock=*/true);  // right after routing
//   ... attention runs while the reads are in flight ...
//   ST_ASSIGN_OR_RETURN(const char* rec, cache.Acquire(layer, 3));  // waits if needed
//   ... compute expert 3 ...
//   cache.Release(layer, 3);
//
// Replacement: least recently released first, never a pinned slot, never a
// locked one (a slot is locked from Prefetch(lock) or Acquire until its
// Release), never one whose read is still in flight. Pinned slots hold the
// hottest experts (from recorded activation counts) for the whole run.
//
// Thread-compatible: one thread drives the cache (the forward pass); the
// source completes reads on its own threads.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/huge_page_arena.h"
#include "storage/expert_source.h"

namespace st {

struct ExpertCacheCounters {
  // Demands: experts a step needs, counted once each when routing chose them
  // (Prefetch with demand = true).
  uint64_t requests = 0;
  uint64_t hits = 0;           // ... already resident or being read at that moment
  uint64_t misses = 0;         // ... that needed a new read
  uint64_t reads = 0;          // records read from the source
  uint64_t bytes_read = 0;
  uint64_t evictions = 0;      // resident records dropped to make room
  uint64_t prefetch_skipped = 0;  // prefetches not issued: every slot locked or loading
  uint64_t guesses_dropped = 0;   // guessed reads dropped before they started (DropGuesses)
  // Time the cache's caller spent in reads: submitting them (the mmap and
  // memory sources read there) and waiting for them (in Acquire, or for a
  // slot). It had counted only Acquire's waits, so mmap reported none.
  double stall_seconds = 0;
};

class ExpertCache {
 public:
  // n_slots >= 1. Allocates n_slots * record_size bytes of anonymous memory
  // (huge pages where the kernel allows) and faults it all in at once: RSS
  // holds the whole cache from the start, and no slot is first touched
  // while decoding.
  static absl::StatusOr<std::unique_ptr<ExpertCache>> Create(std::unique_ptr<ExpertSource> source,
                                                             int n_slots);
  ~ExpertCache();
  ExpertCache(const ExpertCache&) = delete;
  ExpertCache& operator=(const ExpertCache&) = delete;

  const ExpertPack& pack() const { return source_->pack(); }
  const ExpertSource& source() const { return *source_; }
  int n_slots() const { return static_cast<int>(slots_.size()); }
  uint64_t slot_bytes() const { return record_size_; }
  // Whether the slots' memory is 2 MiB aligned and advised MADV_HUGEPAGE.
  bool huge_pages_advised() const { return arena_->huge_pages_advised(); }
  const char* slot_memory() const { return memory_; }
  uint64_t allocated_bytes() const { return record_size_ * slots_.size(); }
  int resident() const;  // slots holding a record (ready or in flight)
  bool IsResident(int layer, int expert) const { return SlotOf(layer, expert) >= 0; }
  // Resident with no read still in flight (Acquire will not wait for it).
  // Polls the source; does not change any counter.
  bool IsReady(int layer, int expert);

  // Reads the given experts into pinned slots and waits for them. Pinned
  // experts are never evicted. FAILED_PRECONDITION if they would leave fewer
  // than `keep_free` unpinned slots.
  absl::Status Pin(absl::Span<const std::pair<int, int>> layer_experts, int keep_free);

  // Reads the given experts (most wanted first) into free or evictable slots
  // and waits for them, without pinning: they join the LRU with the first
  // listed as the most recently used, so the cache starts warm and the run's
  // own routing still decides what stays. Stops quietly when no slot is
  // left; returns how many it read.
  absl::StatusOr<int> Preload(absl::Span<const std::pair<int, int>> layer_experts);

  // Starts reads for the experts of `layer` that are not resident, as far as
  // free or evictable slots allow (the rest are read at Acquire). With lock,
  // every listed expert that is or becomes resident is locked until Release.
  // Returns the number of reads started. demand: these experts are needed
  // now (counted in requests/hits/misses). guess: the reads it starts are
  // guesses (ReadRequest::guess: they queue behind every other read until
  // a call without guess, or Acquire, names the expert).
  absl::StatusOr<int> Prefetch(int layer, absl::Span<const int> experts, bool lock,
                               bool demand = false, bool guess = false);

  // Drops the guessed reads (Prefetch with guess) of `layer` for experts
  // not in `keep` that have not started yet (ExpertSource::Cancel), so the
  // disk and their slots are free for what the layer needs; they no
  // longer count as reads. Returns how many.
  int DropGuesses(int layer, absl::Span<const int> keep);

  // The expert's record (record_size bytes), reading it now if it is not
  // resident; waits for an in-flight read (stall time). The slot is locked
  // until Release. DATA_LOSS / UNAVAILABLE etc. from the source are returned
  // as is and leave the slot empty. RESOURCE_EXHAUSTED if every slot is
  // locked.
  absl::StatusOr<const char*> Acquire(int layer, int expert);
  // Drops every lock on the expert's slot (it becomes most recently used).
  void Release(int layer, int expert);
  // Release of every locked slot (error paths).
  void ReleaseAll();

  // Experts one token's pass over every layer uses (n_layers * top_k; 0 =
  // unknown). Decode reads layers in a cycle, so when the cache has fewer
  // unpinned slots than that, LRU evicts every record before its next use (0% hits
  // on the 4b at 700 MiB, 104 slots). Then a miss at layer L evicts instead
  // the record whose layer comes up last from L on: the layers just used,
  // and experts of L it did not choose (Belady's choice for a cycle).
  void set_cycle(int experts_per_pass) { cycle_ = experts_per_pass; }

  const ExpertCacheCounters& counters() const { return counters_; }
  void ResetCounters() { counters_ = ExpertCacheCounters{}; }

 private:
  struct Slot {
    int64_t key = -1;                 // layer * n_experts + expert, or -1
    std::optional<ReadId> pending;    // read in flight
    bool guess = false;               // ... submitted as a guess, not promoted
    bool locked = false;
    bool pinned = false;
    std::list<int>::iterator lru;     // position in lru_ when evictable
    bool in_lru = false;
  };

  ExpertCache(std::unique_ptr<ExpertSource> source, std::unique_ptr<HugePageArena> memory,
              int n_slots);
  int64_t Key(int layer, int expert) const {
    return static_cast<int64_t>(layer) * pack().header().n_experts + expert;
  }
  int SlotOf(int layer, int expert) const;
  char* SlotData(int s) const { return memory_ + static_cast<uint64_t>(s) * record_size_; }
  // A free slot, or an evictable one (evicted): the least recently used,
  // or with a cycle longer than the unpinned slots, the one whose layer
  // comes up last after now_layer_. -1 if none.
  int TakeSlot();
  // Unlocked reads (speculative guesses) that have landed join the LRU.
  void ReapLanded();
  void Lock(int s);
  void Unlock(int s);
  // Submits a read of (layer, expert) into slot s.
  absl::Status StartRead(int s, int layer, int expert, bool guess = false);
  // Slot s is needed now: a guess still in flight stops queueing behind
  // other reads.
  void Promote(int s);
  // Slot s's read, if a guess not started (ExpertSource::Cancel), is
  // dropped: the slot is free and the read no longer counted. True if so.
  bool DropGuess(int s);
  // Waits for slot s's read; on failure the slot is emptied.
  absl::Status Finish(int s);

  std::unique_ptr<ExpertSource> source_;
  std::unique_ptr<HugePageArena> arena_;
  char* memory_;  // arena_->data()
  uint64_t record_size_;
  std::vector<Slot> slots_;
  std::vector<int> slot_of_key_;  // [n_layers * n_experts] -> slot or -1
  std::vector<int> free_;         // empty slots
  std::list<int> lru_;            // evictable resident slots, least recent first
  int cycle_ = 0;                 // see set_cycle
  int now_layer_ = -1;            // layer of the latest demand (Prefetch/Acquire)
  int pinned_ = 0;                // slots pinned
  std::vector<int> unlocked_pending_;  // slots of unlocked reads in flight (maybe stale entries)
  ExpertCacheCounters counters_;
};

}  // namespace st
