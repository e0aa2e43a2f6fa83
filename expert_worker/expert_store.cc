#include "expert_worker/expert_store.h"
#include "model/mapped_repack.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/units.h"

namespace st {
namespace {

size_t MatrixBytes(const MatrixRef& m) { return m.rows * m.row_bytes(); }

void Advise(const MatrixRef& m, int advice) {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(m.data) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(m.data) + MatrixBytes(m);
  madvise(reinterpret_cast<void*>(begin), end - begin, advice);  // best effort
}

}  // namespace

absl::StatusOr<std::unique_ptr<MappedExpertStore>> MappedExpertStore::Create(
    const GgufFile& file, const ModelConfig& config, uint64_t capacity_bytes) {
  auto store = std::unique_ptr<MappedExpertStore>(new MappedExpertStore());
  ST_ASSIGN_OR_RETURN(store->stacks_, LoadExpertStacks(file, config));
  if (store->stacks_.empty()) return absl::InvalidArgumentError("model has no expert layers");
  const ExpertStacks& s = store->stacks_[0];
  // What an expert takes in RAM while held: its file bytes, or its Q8_0
  // conversion when it is in a storage-only format that is not computed
  // natively (model/mapped_repack.h).
  const bool native = ExpertComputedNatively({s.gate, s.up, s.down, s.down_transposed});
  auto held = [&](const MatrixRef& m) -> uint64_t {
    return native && ComputedNatively(m) ? m.rows * m.row_bytes() : m.kernel_bytes();
  };
  store->expert_bytes_ =
      (held(s.gate) + held(s.up) + held(s.down)) / static_cast<uint64_t>(s.n_experts);
  const uint64_t all = store->expert_bytes_ * config.n_layers * config.n_experts;
  store->capacity_bytes_ = capacity_bytes == 0 ? all : capacity_bytes;
  if (store->capacity_bytes_ < store->expert_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "memory budget ", FormatBytes(store->capacity_bytes_), " holds no expert (one needs ",
        FormatBytes(store->expert_bytes_), ")"));
  }
  return store;
}

absl::Status MappedExpertStore::Hold(const std::vector<ExpertKey>& experts) {
  const uint64_t need = expert_bytes_ * experts.size();
  if (need > capacity_bytes_) {
    return absl::ResourceExhaustedError(
        absl::StrCat(experts.size(), " experts need ", FormatBytes(need),
                     " but the worker's memory budget is ", FormatBytes(capacity_bytes_)));
  }
  for (const ExpertKey& k : experts) Prefetch(k.layer, k.expert);
  return absl::OkStatus();
}

ExpertMatrices MappedExpertStore::Get(int layer, int expert) const {
  const ExpertStacks& s = stacks_[layer];
  return ExpertMatrices{ExpertStacks::Slice(s.gate, expert, s.n_experts),
                        ExpertStacks::Slice(s.up, expert, s.n_experts),
                        ExpertStacks::Slice(s.down, expert, s.n_experts), s.down_transposed};
}

void MappedExpertStore::Prefetch(int layer, int expert) {
  const ExpertMatrices m = Get(layer, expert);
  Advise(m.gate, MADV_WILLNEED);
  Advise(m.up, MADV_WILLNEED);
  Advise(m.down, MADV_WILLNEED);
}

}  // namespace st
