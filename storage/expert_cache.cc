#include "storage/expert_cache.h"

#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "glog/logging.h"

namespace st {
namespace {

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

// Faults [p, p + n) in now, writable, so that no slot is first touched on the
// decode path. A fresh anonymous page costs a fault and a zeroing wherever
// it is first written -- inside io_uring_enter on the forward thread (O_DIRECT
// pins the destination pages), then again on the first user-space read (the
// checksum, on the reaper thread). Measured on the 2-core VM: ~2.6 ms per MiB
// of fresh memory that way against ~0.1 ms per MiB populated here, so a 21b
// run at 8 GiB lost ~30 ms per token while its cache filled (tg128 7.8 ->
// 17.2 t/s with this). Kernels before 5.14 (EINVAL): one write per page.
void PopulateWrite(char* p, size_t n) {
  if (madvise(p, n, MADV_POPULATE_WRITE) == 0) return;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  for (size_t i = 0; i < n; i += page) p[i] = 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExpertCache>> ExpertCache::Create(
    std::unique_ptr<ExpertSource> source, int n_slots) {
  if (n_slots < 1) {
    return absl::InvalidArgumentError(absl::StrCat("expert cache needs at least one slot, got ", n_slots));
  }
  const uint64_t bytes = source->pack().header().record_size * static_cast<uint64_t>(n_slots);
  // Anonymous memory, 2 MiB aligned (records need 4 KiB for O_DIRECT),
  // backed by transparent huge pages: sparse ReGLU reads rows of an expert
  // at random, and with 4 KiB pages nearly every row was a TLB miss.
  auto arena = HugePageArena::Create(bytes);
  if (!arena.ok()) {
    return absl::ResourceExhaustedError(absl::StrCat("expert cache: cannot map ", FormatBytes(bytes),
                                                     " for ", n_slots, " slots: ",
                                                     arena.status().message()));
  }
  PopulateWrite((*arena)->data(), bytes);  // not the rounded-up rest: the budget planned `bytes`
  // Populated first: registration pins the pages it finds. Only a cache
  // that reads again (fewer slots than records) gains: with every expert
  // held, each is read once, and the pages would stay pinned for nothing.
  if (static_cast<uint64_t>(n_slots) < source->pack().header().record_count) {
    if (absl::Status s = source->RegisterMemory((*arena)->data(), bytes); !s.ok()) {
      // RLIMIT_MEMLOCK (8 MiB for a user by default) is the usual reason:
      // reads go on as before, so no warning each run.
      (absl::IsResourceExhausted(s) ? LOG(INFO) : LOG(WARNING))
          << "expert cache: " << s.message() << "; every read pins its slot's pages instead";
    }
  }
  return std::unique_ptr<ExpertCache>(new ExpertCache(std::move(source), *std::move(arena), n_slots));
}

ExpertCache::ExpertCache(std::unique_ptr<ExpertSource> source,
                         std::unique_ptr<HugePageArena> memory, int n_slots)
    : source_(std::move(source)),
      arena_(std::move(memory)),
      memory_(arena_->data()),
      record_size_(source_->pack().header().record_size),
      slots_(n_slots),
      slot_of_key_(source_->pack().header().record_count, -1) {
  free_.reserve(n_slots);
  for (int s = n_slots - 1; s >= 0; --s) free_.push_back(s);
}

ExpertCache::~ExpertCache() {
  // Reads still in flight write into our memory: finish them first.
  for (Slot& slot : slots_) {
    if (!slot.pending) continue;
    if (slot.guess) (void)source_->Cancel(*slot.pending);  // then Wait returns at once
    (void)source_->Wait(*slot.pending);
  }
}

int ExpertCache::resident() const { return n_slots() - static_cast<int>(free_.size()); }

int ExpertCache::SlotOf(int layer, int expert) const { return slot_of_key_[Key(layer, expert)]; }

void ExpertCache::Lock(int s) {
  Slot& slot = slots_[s];
  if (slot.in_lru) {
    lru_.erase(slot.lru);
    slot.in_lru = false;
  }
  slot.locked = true;
}

void ExpertCache::Unlock(int s) {
  Slot& slot = slots_[s];
  slot.locked = false;
  if (slot.pinned || slot.key < 0) return;
  if (slot.pending) {
    // Released before its read landed (an Acquire failed and the step let
    // go of everything): ReapLanded moves it to the LRU once it lands, as
    // for a speculative read; otherwise nothing could ever evict it.
    unlocked_pending_.push_back(s);
  } else if (!slot.in_lru) {
    slot.lru = lru_.insert(lru_.end(), s);
    slot.in_lru = true;
  }
}

bool ExpertCache::IsReady(int layer, int expert) {
  const int s = SlotOf(layer, expert);
  if (s < 0) return false;
  const Slot& slot = slots_[s];
  return !slot.pending || source_->Poll(*slot.pending);
}

void ExpertCache::ReapLanded() {
  size_t keep = 0;
  for (int s : unlocked_pending_) {
    Slot& slot = slots_[s];
    if (!slot.pending || slot.locked) continue;  // finished or claimed since
    if (!source_->Poll(*slot.pending)) {
      unlocked_pending_[keep++] = s;
      continue;
    }
    if (Finish(s).ok()) Unlock(s);  // joins the LRU as most recent
  }
  unlocked_pending_.resize(keep);
}

int ExpertCache::TakeSlot() {
  auto take_free = [this] {
    const int s = free_.back();
    free_.pop_back();
    return s;
  };
  if (!free_.empty()) return take_free();
  ReapLanded();
  // A read that failed as it landed emptied its slot.
  if (!free_.empty()) return take_free();
  if (lru_.empty()) {
    // Unlocked reads still in flight (speculative prefetches) become
    // evictable once they land: wait for one.
    for (int s = 0; s < n_slots(); ++s) {
      Slot& slot = slots_[s];
      if (slot.pending && !slot.locked && !slot.pinned) {
        if (DropGuess(s)) return take_free();  // a guess not started: no wait
        Promote(s);  // not behind other reads
        (void)Finish(s);  // a failed read empties the slot
        if (slot.key < 0) return take_free();  // Finish put it on free_
        Unlock(s);
        break;
      }
    }
    if (lru_.empty()) return -1;
  }
  auto victim = lru_.begin();
  if (now_layer_ >= 0 && cycle_ > n_slots() - pinned_) {
    // Layers come up in order L+1, ..., n-1, 0, ..., L after the layer L
    // being computed: the record whose layer is last in that order (ties:
    // least recently used) waits longest. (A speculative read for L+1 ranks
    // from L too, so it never evicts L+1's own records.)
    const int64_t n_experts = pack().header().n_experts, n_layers = pack().header().n_layers;
    int64_t best = -1;
    for (auto it = lru_.begin(); it != lru_.end(); ++it) {
      const int64_t l = slots_[*it].key / n_experts;
      const int64_t wait = (l - now_layer_ - 1 + n_layers) % n_layers;  // L+1 -> 0, L -> n-1
      if (wait > best) {
        best = wait;
        victim = it;
      }
    }
  }
  const int s = *victim;
  lru_.erase(victim);
  Slot& slot = slots_[s];
  slot.in_lru = false;
  slot_of_key_[slot.key] = -1;
  slot.key = -1;
  ++counters_.evictions;
  return s;
}

absl::Status ExpertCache::StartRead(int s, int layer, int expert, bool guess) {
  ReadRequest req{.layer = layer, .expert = expert, .dst = SlotData(s), .guess = guess};
  // Stall: the mmap and memory sources read inside Submit.
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<ReadId>> ids = source_->Submit({&req, 1});
  counters_.stall_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!ids.ok()) {
    free_.push_back(s);
    return ids.status();
  }
  Slot& slot = slots_[s];
  slot.key = Key(layer, expert);
  slot.pending = (*ids)[0];
  slot.guess = guess;
  slot_of_key_[slot.key] = s;
  ++counters_.reads;
  counters_.bytes_read += record_size_;
  return absl::OkStatus();
}

absl::Status ExpertCache::Finish(int s) {
  Slot& slot = slots_[s];
  if (!slot.pending) return absl::OkStatus();
  const ReadId id = *slot.pending;
  slot.pending.reset();
  const auto t0 = std::chrono::steady_clock::now();  // stall, wherever a read is waited for
  absl::Status status = source_->Wait(id);
  counters_.stall_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!status.ok()) {
    if (slot.in_lru) {
      lru_.erase(slot.lru);
      slot.in_lru = false;
    }
    slot_of_key_[slot.key] = -1;
    slot.key = -1;
    slot.locked = false;
    pinned_ -= slot.pinned;
    slot.pinned = false;
    free_.push_back(s);
  }
  return status;
}

absl::Status ExpertCache::Pin(absl::Span<const std::pair<int, int>> layer_experts, int keep_free) {
  int pinned = 0;
  for (const Slot& slot : slots_) pinned += slot.pinned;
  int wanted = 0;
  for (auto [layer, expert] : layer_experts) {
    ST_RETURN_IF_ERROR(pack().CheckIndex(layer, expert));
    const int s = SlotOf(layer, expert);
    wanted += s < 0 || !slots_[s].pinned;
  }
  if (pinned + wanted > n_slots() - keep_free) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot pin ", wanted, " more experts: ", pinned, " of ", n_slots(),
                     " slots are pinned and ", keep_free, " must stay free"));
  }
  std::vector<int> started;
  for (auto [layer, expert] : layer_experts) {
    int s = SlotOf(layer, expert);
    if (s < 0) {
      s = TakeSlot();
      if (s < 0) break;  // cannot happen: checked above
      ST_RETURN_IF_ERROR(StartRead(s, layer, expert));
      started.push_back(s);
    }
    Lock(s);
    pinned_ += !slots_[s].pinned;
    slots_[s].pinned = true;
  }
  absl::Status status;
  for (int s : started) status.Update(Finish(s));
  for (auto [layer, expert] : layer_experts) {
    const int s = SlotOf(layer, expert);
    if (s >= 0) slots_[s].locked = false;  // pinned: stays out of the LRU
  }
  return status;
}

absl::StatusOr<int> ExpertCache::Preload(absl::Span<const std::pair<int, int>> layer_experts) {
  for (auto [layer, expert] : layer_experts) ST_RETURN_IF_ERROR(pack().CheckIndex(layer, expert));
  std::vector<int> started, order;
  absl::Status status;
  for (auto [layer, expert] : layer_experts) {
    int s = SlotOf(layer, expert);
    if (s < 0) {
      s = TakeSlot();
      if (s < 0) break;  // every slot is pinned, locked or already preloaded
      status = StartRead(s, layer, expert);
      if (!status.ok()) break;
      started.push_back(s);
    }
    if (slots_[s].pinned) continue;
    Lock(s);  // not evicted by a later entry of the list
    order.push_back(s);
  }
  for (int s : started) status.Update(Finish(s));  // a failed read empties its slot
  // Coldest first into the LRU, so the first listed is the most recent.
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    if (slots_[*it].key >= 0 && slots_[*it].locked) Unlock(*it);
  }
  if (!status.ok()) return status;
  return static_cast<int>(started.size());
}

void ExpertCache::Promote(int s) {
  Slot& slot = slots_[s];
  if (!slot.pending || !slot.guess) return;
  source_->Promote(*slot.pending);
  slot.guess = false;
}

bool ExpertCache::DropGuess(int s) {
  Slot& slot = slots_[s];
  if (!slot.pending || !slot.guess || slot.locked || !source_->Cancel(*slot.pending)) return false;
  (void)Finish(s);  // CANCELLED: the slot is free
  ++counters_.guesses_dropped;
  // Not a read after all (min: a reset of the counters since it started).
  counters_.reads -= std::min<uint64_t>(counters_.reads, 1);
  counters_.bytes_read -= std::min<uint64_t>(counters_.bytes_read, record_size_);
  return true;
}

int ExpertCache::DropGuesses(int layer, absl::Span<const int> keep) {
  const int n_experts = static_cast<int>(pack().header().n_experts);
  int dropped = 0;
  for (int s : unlocked_pending_) {
    const Slot& slot = slots_[s];
    if (!slot.pending || slot.key / n_experts != layer ||
        std::find(keep.begin(), keep.end(), static_cast<int>(slot.key % n_experts)) != keep.end()) {
      continue;
    }
    dropped += DropGuess(s);
  }
  std::erase_if(unlocked_pending_, [&](int s) { return !slots_[s].pending; });
  return dropped;
}

absl::StatusOr<int> ExpertCache::Prefetch(int layer, absl::Span<const int> experts, bool lock,
                                          bool demand, bool guess) {
  for (int expert : experts) ST_RETURN_IF_ERROR(pack().CheckIndex(layer, expert));
  if (demand) now_layer_ = layer;
  // Resident experts first (locked, with lock), so making room for a missing
  // one never evicts another the same call wants.
  for (int expert : experts) {
    const int s = SlotOf(layer, expert);
    if (demand) {
      ++counters_.requests;
      ++(s >= 0 ? counters_.hits : counters_.misses);
    }
    if (s >= 0 && lock) Lock(s);
    if (s >= 0 && !guess) Promote(s);
  }
  int started = 0;
  for (int expert : experts) {
    if (SlotOf(layer, expert) >= 0) continue;
    const int s = TakeSlot();
    if (s < 0) {
      ++counters_.prefetch_skipped;
      continue;
    }
    ST_RETURN_IF_ERROR(StartRead(s, layer, expert, guess));
    ++started;
    if (lock) {
      Lock(s);
    } else {
      unlocked_pending_.push_back(s);
    }
  }
  return started;
}

absl::StatusOr<const char*> ExpertCache::Acquire(int layer, int expert) {
  ST_RETURN_IF_ERROR(pack().CheckIndex(layer, expert));
  now_layer_ = layer;
  int s = SlotOf(layer, expert);
  if (s < 0) {
    s = TakeSlot();
    if (s < 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat("expert cache: all ", n_slots(), " slots are locked or pinned; cannot load layer ",
                       layer, " expert ", expert));
    }
    ST_RETURN_IF_ERROR(StartRead(s, layer, expert));
  }
  Lock(s);
  Promote(s);
  if (slots_[s].pending) ST_RETURN_IF_ERROR(Finish(s));
  return SlotData(s);
}

void ExpertCache::Release(int layer, int expert) {
  const int s = SlotOf(layer, expert);
  if (s >= 0 && slots_[s].locked) Unlock(s);
}

void ExpertCache::ReleaseAll() {
  for (int s = 0; s < n_slots(); ++s) {
    if (slots_[s].locked) Unlock(s);
  }
}

}  // namespace st
