// HugePageArena: one anonymous memory mapping aligned to 2 MiB and advised
// MADV_HUGEPAGE, for weights that are streamed every token (fewer TLB misses
// than 4 KiB page-cache pages of a file mapping).
#pragma once

#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"

namespace st {

// Whether transparent huge pages can back a madvise'd mapping: the bracketed
// mode in /sys/kernel/mm/transparent_hugepage/enabled is "always" or
// "madvise". False if the file is missing.
bool TransparentHugePagesAvailable();

// Thread-compatible; the memory is zero-filled and freed on destruction.
class HugePageArena {
 public:
  static constexpr size_t kHugePage = size_t{2} << 20;

  // Maps `bytes` (rounded up to 2 MiB; > 0) of anonymous memory at a 2 MiB
  // aligned address and advises MADV_HUGEPAGE for the whole 2 MiB pages of
  // `bytes`, MADV_NOHUGEPAGE for the rest (so memory past `bytes` never
  // becomes resident; advice failure is not an error: see
  // huge_pages_advised()).
  static absl::StatusOr<std::unique_ptr<HugePageArena>> Create(size_t bytes);
  ~HugePageArena();
  HugePageArena(const HugePageArena&) = delete;
  HugePageArena& operator=(const HugePageArena&) = delete;

  char* data() const { return data_; }
  size_t size() const { return size_; }
  // Whether the madvise calls succeeded (for an arena under 2 MiB that
  // is only the advice against huge pages).
  bool huge_pages_advised() const { return advised_; }
  // Bytes of this arena currently backed by huge pages (from
  // /proc/self/smaps AnonHugePages of the mapping's areas), or 0 if unknown.
  size_t HugePageBytes() const;

 private:
  HugePageArena(char* map, size_t map_size, char* data, size_t size, bool advised)
      : map_(map), map_size_(map_size), data_(data), size_(size), advised_(advised) {}
  char* map_;
  size_t map_size_;
  char* data_;
  size_t size_;
  bool advised_;
};

}  // namespace st
