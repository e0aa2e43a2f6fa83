// Where a worker's experts live. The worker's service asks an ExpertStore for
// an expert's three matrices; today they are views into the worker's own
// memory-mapped GGUF (MappedExpertStore), later possibly the expert pack and
// cache of storage/.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/matmul.h"
#include "model/config.h"
#include "model/expert_ffn.h"
#include "model/gguf.h"
#include "model/weights.h"

namespace st {

struct ExpertKey {
  int layer = 0, expert = 0;
  friend bool operator==(const ExpertKey&, const ExpertKey&) = default;
};

class ExpertStore {
 public:
  virtual ~ExpertStore() = default;
  // Makes exactly `experts` resident (may evict others). RESOURCE_EXHAUSTED if
  // they exceed the store's capacity. Keys are validated by the caller.
  // The experts of the previous Hold must stay readable until the next one:
  // a worker serves its old assignment while it packs a new one.
  virtual absl::Status Hold(const std::vector<ExpertKey>& experts) = 0;
  // The matrices of an expert of the last two Holds.
  virtual ExpertMatrices Get(int layer, int expert) const = 0;
  // Best-effort hint: start reading the expert into memory.
  virtual void Prefetch(int layer, int expert) {}
  // Bytes of one expert (gate + up + down).
  virtual uint64_t expert_bytes() const = 0;
  // Capacity in bytes.
  virtual uint64_t capacity_bytes() const = 0;
};

// Views into the mapped GGUF. Hold() advises the kernel to read the held
// experts (MADV_WILLNEED) and to drop released ones (MADV_DONTNEED on the
// mapping is not used: the file pages stay shareable with the page cache).
// Capacity defaults to all experts.
class MappedExpertStore : public ExpertStore {
 public:
  // `capacity_bytes` 0 = every expert of the model.
  static absl::StatusOr<std::unique_ptr<MappedExpertStore>> Create(const GgufFile& file,
                                                                   const ModelConfig& config,
                                                                   uint64_t capacity_bytes);
  absl::Status Hold(const std::vector<ExpertKey>& experts) override;
  ExpertMatrices Get(int layer, int expert) const override;
  void Prefetch(int layer, int expert) override;
  uint64_t expert_bytes() const override { return expert_bytes_; }
  uint64_t capacity_bytes() const override { return capacity_bytes_; }

 private:
  MappedExpertStore() = default;
  std::vector<ExpertStacks> stacks_;
  uint64_t expert_bytes_ = 0, capacity_bytes_ = 0;
};

}  // namespace st
