// Per-sequence key/value cache: a flat buffer per global layer and a ring per
// sliding-window layer, holding F16 (default), BF16 or F32 elements.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/huge_page_arena.h"
#include "kernels/attention.h"
#include "kernels/dtype.h"
#include "model/config.h"

namespace st {

// "f16", "bf16" or "f32" (case-insensitive) -> the KV element type; anything
// else is INVALID_ARGUMENT.
absl::StatusOr<DType> ParseKvType(std::string_view name);

// Position p of layer l lives in slot p % capacity(l). Global layers have
// capacity = max_tokens; sliding-window layers keep window + max_batch - 1
// slots, enough for every query of a batch of up to max_batch new tokens to
// see its whole window while the batch's own keys are being written.
// Rows are given as floats and rounded (to nearest even) to the element
// type on Store, so a position's stored K/V do not depend on batching.
// A cache of kHugePagesFrom bytes or more lives in one 2 MiB-aligned
// MADV_HUGEPAGE mapping, a smaller one in ordinary memory; either way it
// starts zeroed. Decode at depth reads every layer's K/V from DRAM, and in
// 4 KiB pages the TLB misses slowed it (session 20,
// BM_AttendRingColdLayers, one thread, 4096 keys: 4B 17.1-19.7 -> 15.9-16.3
// ms per token, 21B 50.9-52.5 -> 38.1-39.5). Thread-compatible.
class KvCache {
 public:
  // max_tokens >= 1, max_batch >= 1 and IsKvType(type) (checked).
  KvCache(const ModelConfig& config, int64_t max_tokens, int max_batch,
          DType type = DType::kF16);
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;
  KvCache(KvCache&&) = default;
  KvCache& operator=(KvCache&&) = default;

  // From this size on the cache is put in huge pages (smaller caches, e.g.
  // a server's short contexts, would round up to 2 MiB each).
  static constexpr size_t kHugePagesFrom = size_t{32} << 20;

  int64_t max_tokens() const { return max_tokens_; }
  // The largest batch the rings were sized for (see class comment).
  int max_batch() const { return max_batch_; }
  int64_t capacity(int layer) const { return layers_[layer].capacity; }
  DType type() const { return type_; }
  // Bytes of K and V (BytesFor's number). A mapping (kHugePagesFrom on)
  // rounds it up to 2 MiB, and its pages become resident as positions are
  // first stored (an ordinary cache is zeroed, so resident, at once).
  size_t bytes() const;
  // Whether the cache lives in a mapping advised MADV_HUGEPAGE (the kernel
  // backs it with huge pages where transparent huge pages are enabled).
  bool in_huge_pages() const { return arena_ != nullptr && arena_->huge_pages_advised(); }
  // What bytes() will be for a cache built with these arguments.
  static size_t BytesFor(const ModelConfig& config, int64_t max_tokens, int max_batch,
                         DType type = DType::kF16);

  // Stores the k and v rows (kv_dim floats each) of position `pos`.
  void Store(int layer, int64_t pos, const float* k, const float* v);
  // Store of columns [col0, col0 + n) only: k and v point at those columns.
  // Stores of disjoint column ranges of one row may run on several threads.
  void StoreColumns(int layer, int64_t pos, int col0, int n, const float* k, const float* v);
  KvRingView View(int layer) const;

 private:
  struct Layer {
    int64_t capacity = 0;
    uint8_t* k = nullptr;  // [capacity, kv_dim] elements of type_
    uint8_t* v = nullptr;
  };
  int kv_dim_;
  int64_t max_tokens_;
  int max_batch_;
  DType type_;
  size_t elem_bytes_;
  size_t bytes_ = 0;
  // The layers' K and V, one after another, in one of these.
  std::unique_ptr<HugePageArena> arena_;
  std::vector<uint8_t> plain_;
  std::vector<Layer> layers_;
};

}  // namespace st
