#include "common/huge_page_arena.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace st {

bool TransparentHugePagesAvailable() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string modes;
  if (!std::getline(in, modes)) return false;
  return modes.find("[always]") != std::string::npos ||
         modes.find("[madvise]") != std::string::npos;
}

absl::StatusOr<std::unique_ptr<HugePageArena>> HugePageArena::Create(size_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("HugePageArena of 0 bytes");
  const size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  const size_t map_size = size + kHugePage;  // room to align the start
  void* p = ::mmap(nullptr, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ErrnoToStatus(errno, absl::StrCat("mmap of ", map_size, " anonymous bytes"));
  }
  char* map = static_cast<char*>(p);
  const uintptr_t addr = reinterpret_cast<uintptr_t>(map);
  char* data = map + ((kHugePage - addr % kHugePage) % kHugePage);
  // Huge pages only where `bytes` fills them: a first write into an
  // advised 2 MiB range may be given a whole huge page, and khugepaged
  // collapses one with a single 4 KiB page in use (max_ptes_none is 511 by
  // default), so a partly used last page, or an arena smaller than one,
  // grew the RSS past what the memory budget had planned (a tiny K-quant
  // model's 28 small converted tensors, one arena each: ~48 MiB). The rest
  // is advised against huge pages, for THP "always" too.
  const size_t whole = bytes / kHugePage * kHugePage;
  bool advised = true;
  if (whole > 0) advised = ::madvise(data, whole, MADV_HUGEPAGE) == 0;
  if (whole < size) advised = ::madvise(data + whole, size - whole, MADV_NOHUGEPAGE) == 0 && advised;
  return std::unique_ptr<HugePageArena>(new HugePageArena(map, map_size, data, size, advised));
}

HugePageArena::~HugePageArena() { ::munmap(map_, map_size_); }

size_t HugePageArena::HugePageBytes() const {
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool inside = false;
  size_t total = 0;  // the advice splits the mapping into several areas
  const uintptr_t lo = reinterpret_cast<uintptr_t>(map_), hi = lo + map_size_;
  while (std::getline(in, line)) {
    uintptr_t start = 0, end = 0;
    char dash = 0;
    std::istringstream header(line);
    if (header >> std::hex >> start >> dash >> end && dash == '-') {
      inside = start < hi && end > lo;
      continue;
    }
    if (inside && line.rfind("AnonHugePages:", 0) == 0) {
      std::istringstream field(line.substr(14));
      size_t kb = 0;
      field >> kb;
      total += kb * 1024;
    }
  }
  return total;
}

}  // namespace st
