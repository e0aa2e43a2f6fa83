#include "model/mapped_repack.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/huge_page_arena.h"
#include "common/process_memory.h"
#include "glog/logging.h"
#include "kernels/ggml_storage.h"
#include "kernels/kquant_dot.h"
#include "xxhash.h"
#include "kernels/packed_kquant.h"
#include "kernels/packed_matrix.h"

namespace st {
namespace {

// A packed copy: whole stacks (tens of MB, streamed every token) go into a
// huge-page arena, whose 2 MiB pages spare the TLB misses (and the stops of
// the hardware prefetcher at every 4 KiB boundary) of ordinary heap pages;
// smaller matrices (single experts) into the heap, where rounding to 2 MiB
// would waste more than it saves.
class Buffer {
 public:
  static constexpr size_t kArenaMinBytes = size_t{16} << 20;

  static Buffer Allocate(size_t bytes) {
    Buffer b;
    if (bytes >= kArenaMinBytes && TransparentHugePagesAvailable()) {
      auto arena = HugePageArena::Create(bytes);
      if (arena.ok()) {
        b.arena_ = std::move(*arena);
        return b;
      }
    }
    b.heap_.reset(static_cast<char*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
    return b;
  }
  char* get() const { return arena_ != nullptr ? arena_->data() : heap_.get(); }

 private:
  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<HugePageArena> arena_;
  std::unique_ptr<char, FreeDeleter> heap_;
};

// A matrix by its data pointer and shape: a whole expert stack (the local
// executor) and its first expert's slice (a worker, the coordinator's
// share) start at the same byte, and one copy must never serve for the other.
using MatrixKey = std::tuple<const void*, size_t, size_t>;  // data, rows, cols

// A matrix in a storage-only format converted to Q8_0, in the packed
// layout or in rows: data, rows, cols, packed, and for a matrix outside
// every mapping a hash of its bytes (its buffer can be freed and another
// one made at the same address; a mapping's conversions die with it).
using ConvertedKey = std::tuple<const void*, size_t, size_t, bool, uint64_t>;

struct Mapping {
  size_t size = 0;
  absl::flat_hash_map<MatrixKey, Buffer> packed;
  absl::flat_hash_map<ConvertedKey, Buffer> converted;
  size_t copy_bytes = 0;                             // of those copies
};

struct Registry {
  absl::Mutex mu;
  std::map<uintptr_t, Mapping> mappings ABSL_GUARDED_BY(mu);  // by base address
  // Conversions of storage-format matrices outside every mapping (a test's
  // buffer): kept until exit, as nothing unregisters them.
  Mapping unmapped ABSL_GUARDED_BY(mu);
  size_t copy_bytes ABSL_GUARDED_BY(mu) = 0;  // of every packed copy held
};

// The registered mapping that holds all of m's bytes, or null.
Mapping* MappingOf(Registry& r, const MatrixRef& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(r.mu) {
  const auto p = reinterpret_cast<uintptr_t>(m.data);
  auto it = r.mappings.upper_bound(p);
  if (it == r.mappings.begin()) return nullptr;
  --it;
  if (p + m.rows * m.row_bytes() > it->first + it->second.size) return nullptr;
  return &it->second;
}

Registry& Get() {
  static Registry* r = new Registry;  // never destroyed: used until exit
  return *r;
}

std::atomic<bool> g_repack{true};
std::atomic<bool> g_native_kquant{true};

// m (storage set) as Q8_0: made on the first call, then shared; packed
// copies have null `data` (only the packed kernels read them, as for a
// dense matrix converted at load).
MatrixRef FromStorage(const MatrixRef& m, bool pack) {
  Registry& r = Get();
  bool in_mapping;
  {
    absl::MutexLock lock(&r.mu);
    in_mapping = MappingOf(r, m) != nullptr;
  }
  const uint64_t content = in_mapping ? 0 : XXH3_64bits(m.data, m.rows * m.row_bytes());
  const ConvertedKey key(m.data, m.rows, m.cols, pack, content);
  auto view = [&](const Buffer& b) {
    return MatrixRef{.type = DType::kQ8_0,
                     .data = pack ? nullptr : b.get(),
                     .rows = m.rows,
                     .cols = m.cols,
                     .packed = pack ? b.get() : nullptr};
  };
  {
    absl::MutexLock lock(&r.mu);
    Mapping* mapping = MappingOf(r, m);
    if (mapping == nullptr) mapping = &r.unmapped;
    if (auto it = mapping->converted.find(key); it != mapping->converted.end()) {
      return view(it->second);
    }
  }
  // Converted outside the lock, as PackedFromMapping packs.
  const size_t bytes = m.kernel_bytes();
  Buffer copy = Buffer::Allocate(bytes);
  CHECK(copy.get() != nullptr) << "out of memory converting a " << m.storage->name
                               << " expert matrix to Q8_0 (" << bytes << " bytes)";
  if (pack) {
    // 16 rows at a time through a small buffer: each packed group is the
    // packing of its own 16 rows (CanPack: rows % 16 == 0).
    const size_t group = kPackRows * RowBytes(DType::kQ8_0, m.cols);
    std::vector<char> rows(group);
    for (size_t g = 0; g < m.rows / kPackRows; ++g) {
      ConvertRowsToQ8_0(*m.storage,
                        static_cast<const char*>(m.data) + g * kPackRows * m.row_bytes(),
                        kPackRows, m.cols, rows.data());
      PackRows(DType::kQ8_0, rows.data(), kPackRows, m.cols, copy.get() + g * group);
    }
  } else {
    ConvertRowsToQ8_0(*m.storage, m.data, m.rows, m.cols, copy.get());
  }
  absl::MutexLock lock(&r.mu);
  Mapping* mapping = MappingOf(r, m);
  const bool mapped = mapping != nullptr;
  if (!mapped) mapping = &r.unmapped;
  auto [it, stored] = mapping->converted.try_emplace(key, std::move(copy));
  if (stored) {
    r.copy_bytes += bytes;
    mapping->copy_bytes += bytes;
    if (mapped) ReleaseWholePages(m.data, m.rows * m.row_bytes());
  }
  return view(it->second);
}

// The shared same-size copy of m (in a registered mapping) that fill(dst)
// writes, keyed by m's bytes and shape: made on the first call, then
// shared, and m's file pages released. Null when m is in no mapping or the
// copy cannot be allocated (the row kernels still work). Filled outside the
// lock, so that threads copy different matrices at once (a worker's Assign
// packs on every core) and a lookup never waits for a copy; two threads
// copying the same matrix both do the work, and the first copy stored wins.
const char* SharedCopy(const MatrixRef& m, const std::function<void(char*)>& fill) {
  const size_t bytes = m.rows * m.row_bytes();
  const MatrixKey key(m.data, m.rows, m.cols);
  Registry& r = Get();
  {
    absl::MutexLock lock(&r.mu);
    Mapping* mapping = MappingOf(r, m);
    if (mapping == nullptr) return nullptr;
    if (auto it = mapping->packed.find(key); it != mapping->packed.end()) return it->second.get();
  }
  Buffer copy = Buffer::Allocate(bytes);
  if (copy.get() == nullptr) return nullptr;
  fill(copy.get());
  absl::MutexLock lock(&r.mu);
  Mapping* mapping = MappingOf(r, m);
  if (mapping == nullptr) return nullptr;  // unregistered meanwhile
  auto [it, stored] = mapping->packed.try_emplace(key, std::move(copy));
  if (stored) {
    r.copy_bytes += bytes;
    mapping->copy_bytes += bytes;
    ReleaseWholePages(m.data, bytes);
  }
  return it->second.get();
}

}  // namespace

void RegisterFileMapping(const void* base, size_t size) {
  Registry& r = Get();
  absl::MutexLock lock(&r.mu);
  Mapping& m = r.mappings[reinterpret_cast<uintptr_t>(base)];
  r.copy_bytes -= m.copy_bytes;  // a mapping registered again starts over
  m = Mapping{.size = size};
}

void UnregisterFileMapping(const void* base) {
  Registry& r = Get();
  absl::MutexLock lock(&r.mu);
  auto it = r.mappings.find(reinterpret_cast<uintptr_t>(base));
  if (it == r.mappings.end()) return;
  r.copy_bytes -= it->second.copy_bytes;
  r.mappings.erase(it);
}

void SetExpertRepack(bool on) { g_repack.store(on, std::memory_order_relaxed); }

void SetNativeKQuant(bool on) { g_native_kquant.store(on, std::memory_order_relaxed); }

bool ComputedNatively(const MatrixRef& m) {
  return m.storage != nullptr && m.packed == nullptr && m.data != nullptr &&
         g_native_kquant.load(std::memory_order_relaxed) &&
         KQuantDotSupported(m.storage->ggml_type) && m.cols % 256 == 0;
}

MatrixRef PackedOrNative(const MatrixRef& m) {
  return ComputedNatively(m) ? m : PackedFromMapping(m);
}

MatrixRef PackedKQuantFromMapping(const MatrixRef& m) {
  // Whatever --no-repack says: the layout sets the numbers (an expert pack
  // holds it where CanPackKQuant), not only the speed.
  if (!ComputedNatively(m) || m.packed_kquant != nullptr ||
      !CanPackKQuant(m.storage->ggml_type, m.rows, m.cols)) {
    return m;
  }
  MatrixRef out = m;
  out.packed_kquant = SharedCopy(
      m, [&m](char* dst) { PackKQuantRows(m.storage->ggml_type, m.data, m.rows, m.cols, dst); });
  return out;
}

MatrixRef PackedKQuantOrNative(const MatrixRef& m) {
  return ComputedNatively(m) ? PackedKQuantFromMapping(m) : PackedFromMapping(m);
}

bool ExpertComputedNatively(const ExpertMatrices& m) {
  if (m.down_transposed || m.gate.rows % kQK != 0) return false;
  bool any = false;
  for (const MatrixRef* x : {&m.gate, &m.up, &m.down}) {
    if (ComputedNatively(*x)) {
      any = true;
    } else if (x->packed == nullptr &&
               (!g_repack.load(std::memory_order_relaxed) ||
                !CanPack(x->storage != nullptr ? DType::kQ8_0 : x->type, x->rows, x->cols))) {
      return false;
    }
  }
  return any;
}

ExpertMatrices PrepareExpert(const ExpertMatrices& m) {
  if (m.down_transposed) {
    return {PackedFromMapping(m.gate), PackedFromMapping(m.up), ConvertedFromMapping(m.down), true};
  }
  if (ExpertComputedNatively(m)) {
    // Gate and down are computed whole: packed; up rows stay as stored
    // (sparse ReGLU reads only the active ones).
    return {PackedKQuantOrNative(m.gate), PackedOrNative(m.up), PackedKQuantOrNative(m.down),
            false};
  }
  return {PackedFromMapping(m.gate), PackedFromMapping(m.up), PackedFromMapping(m.down), false};
}

MatrixRef ConvertedFromMapping(const MatrixRef& m) {
  return m.storage != nullptr ? FromStorage(m, /*pack=*/false) : m;
}

MatrixRef PackedFromMapping(const MatrixRef& m) {
  if (m.storage != nullptr) {
    return FromStorage(m, g_repack.load(std::memory_order_relaxed) &&
                              CanPack(DType::kQ8_0, m.rows, m.cols));
  }
  if (m.packed != nullptr || !g_repack.load(std::memory_order_relaxed) ||
      !CanPack(m.type, m.rows, m.cols)) {
    return m;
  }
  MatrixRef out = m;
  out.packed = SharedCopy(m, [&m](char* dst) { PackRows(m.type, m.data, m.rows, m.cols, dst); });
  return out;
}

size_t DropPackedCopy(const MatrixRef& m) {
  Registry& r = Get();
  absl::MutexLock lock(&r.mu);
  Mapping* mapping = MappingOf(r, m);
  if (mapping == nullptr) return 0;
  size_t bytes = 0;
  if (m.storage != nullptr) {
    for (bool pack : {false, true}) {
      if (mapping->converted.erase(ConvertedKey(m.data, m.rows, m.cols, pack, 0)) > 0) {
        bytes += m.kernel_bytes();
      }
    }
    // A K-quant computed as stored: its 16-row packed copy.
    if (mapping->packed.erase(MatrixKey(m.data, m.rows, m.cols)) > 0) {
      bytes += m.rows * m.row_bytes();
    }
  } else if (mapping->packed.erase(MatrixKey(m.data, m.rows, m.cols)) > 0) {
    bytes = m.rows * m.row_bytes();
  }
  r.copy_bytes -= bytes;
  mapping->copy_bytes -= bytes;
  return bytes;
}

size_t PackedCopyBytes() {
  Registry& r = Get();
  absl::MutexLock lock(&r.mu);
  return r.copy_bytes;
}

}  // namespace st
