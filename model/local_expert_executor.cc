#include "model/local_expert_executor.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <ranges>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/process_memory.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "glog/logging.h"
#include "model/expert_ffn.h"
#include "model/expert_phases.h"
#include "kernels/packed_matrix.h"
#include "model/mapped_repack.h"

namespace st {
namespace {

// Whether m of stack s is computed in its own format.
bool Native(const ExpertStacks& s, const MatrixRef& m) {
  return ExpertComputedNatively({s.gate, s.up, s.down, s.down_transposed}) && ComputedNatively(m);
}

// When the experts are in a storage-only format (converted to Q8_0 in RAM
// as they are first used): one line saying so, or RESOURCE_EXHAUSTED when
// the conversion cannot fit in the memory available (it would end in the
// OOM killer, past any chance of a clear error).
absl::Status PrepareStorageConversion(const std::vector<ExpertStacks>& stacks) {
  std::set<std::string> formats, native;
  uint64_t file_bytes = 0, q8_bytes = 0;
  for (const ExpertStacks& s : stacks) {
    for (const MatrixRef* m : {&s.gate, &s.up, &s.down}) {
      if (m->storage == nullptr) continue;
      if (Native(s, *m)) {
        native.insert(m->storage->name);
        continue;
      }
      formats.insert(m->storage->name);
      file_bytes += m->rows * m->row_bytes();
      q8_bytes += m->kernel_bytes();
    }
  }
  if (!native.empty()) {
    LOG(INFO) << "experts in " << absl::StrJoin(native, ", ")
              << " are computed in their own format (no conversion)";
  }
  if (formats.empty()) return absl::OkStatus();
  const std::string what = absl::StrCat("experts in ", absl::StrJoin(formats, ", "));
  const uint64_t available = AvailableMemoryBytes();
  if (available > 0 && q8_bytes > available) {
    return absl::ResourceExhaustedError(absl::StrCat(
        what, " are computed as Q8_0, which takes ", FormatBytes(q8_bytes), " in RAM (",
        FormatBytes(file_bytes), " in the file), but only ", FormatBytes(available),
        " is available; HINT: `smallthinker convert MODEL` writes them to an expert pack, "
        "then run with --memory-budget (or use a Q4_0 file)"));
  }
  LOG(WARNING) << what << ": converting to Q8_0 in RAM (" << FormatBytes(file_bytes)
               << " in the file -> " << FormatBytes(q8_bytes)
               << "; the kernels compute in Q4_0 and Q8_0). Under --memory-budget they are read "
                  "from the expert pack instead (`smallthinker convert` writes it; with "
                  "--kquant-as-q8, `smallthinker convert --kquant-as-q8`)";
  return absl::OkStatus();
}

}  // namespace

uint64_t LocalExpertExecutor::ExpertBytes() const {
  uint64_t bytes = 0, experts = 0;
  for (const ExpertStacks& s : stacks_) {
    for (const MatrixRef* m : {&s.gate, &s.up, &s.down}) {
      bytes += Native(s, *m) ? m->rows * m->row_bytes() : m->kernel_bytes();
    }
    experts += static_cast<uint64_t>(s.n_experts);
  }
  return experts > 0 ? bytes / experts : 0;
}

std::string LocalExpertExecutor::NativeFormats() const {
  std::set<std::string> names;
  for (const ExpertStacks& s : stacks_) {
    for (const MatrixRef* m : {&s.gate, &s.up, &s.down}) {
      if (Native(s, *m)) names.insert(m->storage->name);
    }
  }
  return absl::StrJoin(names, ", ");
}

LocalExpertExecutor::LocalExpertExecutor(const ModelConfig& config,
                                         std::vector<ExpertStacks> stacks, ThreadPool* pool)
    : config_(config), stacks_(std::move(stacks)), pool_(pool) {}

void LocalExpertExecutor::ComputeExpert(const MatrixRef& gate, const MatrixRef& up,
                                        const MatrixRef& down, bool down_transposed,
                                        const float* x, int n, float* y, ThreadPool* pool,
                                        FfnSparsity* sparsity) {
  // An expert with K-quant matrices computed as stored goes the way every
  // step computes it (ExpertPhases), so all callers agree bit for bit.
  if (const ExpertMatrices m{gate, up, down, down_transposed}; ExpertComputedNatively(m)) {
    thread_local ExpertPhases phases;
    thread_local std::vector<std::vector<int>> by_expert(1);
    by_expert[0].resize(n);
    for (int i = 0; i < n; ++i) by_expert[0][i] = i;
    const ExpertMatrices prepared = PrepareExpert(m);
    phases.Run([&prepared](int) { return prepared; }, by_expert, {0}, /*top_k=*/1,
               /*slot_rows=*/nullptr, x, n, y, pool, sparsity);
    return;
  }
  // Gate (always computed whole) and a non-transposed down (dense over z)
  // use the packed kernels when they live in a GGUF mapping; up stays in
  // rows for sparse ReGLU, and so does a transposed down. Matrices in a
  // storage-only format become Q8_0 here on first use (mapped_repack.h).
  ExpertFfn({.gate = PackedFromMapping(gate),
             .up = PackedFromMapping(up),
             .down = down_transposed ? ConvertedFromMapping(down) : PackedFromMapping(down),
             .down_transposed = down_transposed},
            x, n, y, pool, sparsity);
}

absl::Status LocalExpertExecutor::Run(int layer, const Routes& routes, const float* h,
                                      float* out) {
  if (!stacks_packed_) {
    // First step: pack whole stacks (one copy and one page release per
    // stack) rather than expert by expert while decoding. Not done at
    // construction: an offloaded model replaces this executor unused.
    // Only when each expert's rows are whole 16-row groups (slices of the
    // packed stack are then exactly the packed experts).
    auto whole_groups = [](const MatrixRef& m, int n) { return (m.rows / n) % kPackRows == 0; };
    ST_RETURN_IF_ERROR(PrepareStorageConversion(stacks_));
    auto pack = [&](size_t begin, size_t end) {
      for (size_t l = begin; l < end; ++l) {
        ExpertStacks& st = stacks_[l];
        if (whole_groups(st.gate, st.n_experts) && whole_groups(st.down, st.n_experts) &&
            ExpertComputedNatively({st.gate, st.up, st.down, st.down_transposed})) {
          // K-quant matrices computed as stored: gate and down (computed
          // whole) packed where they can be, up rows as stored.
          st.gate = PackedKQuantOrNative(st.gate);
          st.up = PackedOrNative(st.up);
          st.down = PackedKQuantOrNative(st.down);
          continue;
        }
        if (whole_groups(st.gate, st.n_experts)) {
          st.gate = PackedFromMapping(st.gate);
          st.up = PackedFromMapping(st.up);
        }
        if (st.down_transposed) {
          st.down = ConvertedFromMapping(st.down);  // rows; a no-op unless a storage format
        } else if (whole_groups(st.down, st.n_experts)) {
          st.down = PackedFromMapping(st.down);
        }
      }
    };
    // Layers in parallel: converting a K-quant model's experts to Q8_0
    // (dequantize, quantize) is seconds of CPU per GiB.
    if (pool_ != nullptr) {
      pool_->ParallelFor(stacks_.size(), pack);
    } else {
      pack(0, stacks_.size());
    }
    stacks_packed_ = true;
  }
  const ExpertStacks& s = stacks_[layer];
  const int n_tokens = routes.n_tokens, top_k = routes.top_k;
  const size_t d = config_.d_model;
  slot_out_.resize(static_cast<size_t>(n_tokens) * top_k * d);  // [n_tokens, top_k, d]

  // Group (token, slot) pairs by expert, larger groups first.
  GroupByExpert(s.n_experts, std::views::iota(0, n_tokens * top_k),
                [&](int i) { return routes.ids[i]; }, by_expert_, used_);

  // One expert's rows: gather, ReGLU, scatter into its slots. `pool` splits
  // the expert's own matrices; null runs it on the calling thread. Either
  // way the numbers are the same (kernels never depend on the split).
  auto compute = [&](int e, std::vector<float>& in, std::vector<float>& y, ThreadPool* pool,
                     FfnSparsity* sparsity) {
    const std::vector<int>& slots = by_expert_[e];
    const int n = static_cast<int>(slots.size());
    in.resize(n * d);
    y.resize(n * d);
    GatherSlotRows(h, slots, top_k, d, in.data());
    ComputeExpert(ExpertStacks::Slice(s.gate, e, s.n_experts),
                  ExpertStacks::Slice(s.up, e, s.n_experts),
                  ExpertStacks::Slice(s.down, e, s.n_experts), s.down_transposed, in.data(), n,
                  y.data(), pool, sparsity);
    ScatterSlotRows(y.data(), slots, d, slot_out_.data());
  };

  const int threads = pool_ != nullptr ? pool_->num_threads() : 1;
  if (ExpertPhases::Supports(s)) {
    // Packed experts (the GGUF path's usual case), or K-quant ones in rows:
    // all experts of the step in two phases of small items
    // (model/expert_phases.h).
    phases_.Run(s, by_expert_, used_, top_k, h, n_tokens, slot_out_.data(), pool_, &sparsity_);
  } else if (threads > 1 && static_cast<int>(used_.size()) >= 2 * threads) {
    // Many experts (batched decode, prefill): one expert per work item on
    // one thread each, instead of a pool split (and its barrier) per matrix
    // of every expert.
    std::mutex mu;
    pool_->ParallelFor(used_.size(), [&](size_t begin, size_t end) {
      std::vector<float> in, y;
      FfnSparsity local;
      for (size_t i = begin; i < end; ++i) compute(used_[i], in, y, nullptr, &local);
      std::lock_guard<std::mutex> lock(mu);
      sparsity_ += local;
    });
  } else {
    for (int e : used_) compute(e, gathered_, expert_out_, pool_, &sparsity_);
  }
  CombineSlots(routes, slot_out_.data(), d, out);
  return absl::OkStatus();
}

}  // namespace st
