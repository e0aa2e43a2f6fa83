#include "storage/cached_expert_executor.h"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace st {

CachedExpertExecutor::CachedExpertExecutor(const ModelConfig& config,
                                           std::unique_ptr<ExpertCache> cache, ThreadPool* pool)
    : config_(config), cache_(std::move(cache)), pool_(pool) {
  // Supports looks at layouts, types and shapes only: any record address.
  static const char kAnyRecord = 0;
  as_stored_ = cache_->pack().header().as_stored();
  use_phases_ = !as_stored_ && SparsePhases::Supports(RecordMatrices(&kAnyRecord, 0));
}

uint64_t CachedExpertExecutor::ScratchBytes(const ModelConfig& config, int max_tokens,
                                            bool as_stored) {
  const uint64_t tokens = std::max(max_tokens, 1);
  const uint64_t d = config.d_model;
  // slot_out_ [tokens * top_k, d]; gathered_ and expert_out_ [tokens, d]
  // (one expert's rows, when SparsePhases cannot run).
  return 4 * tokens * d * (config.top_k + 2) +
         (as_stored ? ExpertPhases::ScratchBytes(tokens, config.top_k, config.n_experts, d,
                                                 config.d_expert)
                    : SparsePhases::ScratchBytes(tokens, config.top_k, config.n_experts, d,
                                                 config.d_expert));
}

ExpertMatrices CachedExpertExecutor::RecordMatrices(const char* record, int layer) const {
  const PackHeader& h = cache_->pack().header();
  return {.gate = h.RecordMatrix(record, layer, 0),
          .up = h.RecordMatrix(record, layer, 1),
          .down = h.RecordMatrix(record, layer, 2),
          .down_transposed = !h.as_stored()};
}

absl::Status CachedExpertExecutor::RunPhases(int layer, const std::vector<int>& experts,
                                             const std::vector<std::vector<int>>& by_expert,
                                             const Routes& routes, const float* h) {
  if (experts.empty()) return absl::OkStatus();
  std::vector<ExpertMatrices> ms;
  std::vector<const std::vector<int>*> slots;
  for (int e : experts) {
    absl::StatusOr<const char*> rec = cache_->Acquire(layer, e);
    if (!rec.ok()) {
      cache_->ReleaseAll();
      return Annotate(rec.status(), absl::StrCat("expert ", e));
    }
    ms.push_back(RecordMatrices(*rec, layer));
    slots.push_back(&by_expert[e]);
  }
  if (as_stored_) {
    std::vector<int> index(config_.n_experts, 0);
    for (size_t k = 0; k < experts.size(); ++k) index[experts[k]] = static_cast<int>(k);
    stored_phases_.Run([&](int e) { return ms[index[e]]; }, by_expert, experts, routes.top_k,
                       /*slot_rows=*/nullptr, h, routes.n_tokens, slot_out_.data(), pool_,
                       &sparsity_);
  } else {
    phases_.Run(ms, slots, routes.top_k, h, routes.n_tokens, slot_out_.data(), pool_, &sparsity_);
  }
  for (int e : experts) cache_->Release(layer, e);
  return absl::OkStatus();
}

std::vector<int> CachedExpertExecutor::DistinctExperts(const Routes& routes) const {
  std::vector<char> seen(config_.n_experts, 0);
  std::vector<int> out;
  for (int id : routes.ids) {
    if (!seen[id]) {
      seen[id] = 1;
      out.push_back(id);
    }
  }
  return out;
}

void CachedExpertExecutor::Prepare(int layer, const Routes& routes) {
  if (layer == 0 && step_hook_) step_hook_();
  const std::vector<int> experts = DistinctExperts(routes);
  if (layer == speculated_layer_) {
    // Wrong guesses not read yet are dropped (they no longer count as reads).
    const int dropped = cache_->DropGuesses(layer, experts);
    // (min: a guess left by a failed step, started before a ResetStats)
    speculation_.reads -= std::min<uint64_t>(speculation_.reads, dropped);
    for (int e : experts) {
      speculation_.correct += std::count(speculated_.begin(), speculated_.end(), e) > 0;
      speculation_.reads_used +=
          std::count(speculated_reads_.begin(), speculated_reads_.end(), e) > 0;
    }
    speculation_.needed += experts.size();
  }
  // A guess is for the next Prepare only: a step that failed after its
  // guess, or a prompt batch (never guessed for), does not score it.
  speculated_layer_ = -1;
  // Errors surface in Run, which acquires every expert anyway.
  (void)cache_->Prefetch(layer, experts, /*lock=*/true, /*demand=*/true);
}

void CachedExpertExecutor::Speculate(int layer, const Routes& routes) {
  // Only decode steps: a prompt batch already needs most experts of a layer,
  // and guessing the next layer's would just evict them.
  if (routes.n_tokens > 1) return;
  speculated_ = DistinctExperts(routes);
  speculated_layer_ = layer;
  speculation_.tokens += layer == 1;  // the first guess of a step (from layer 0)
  speculation_.guessed += speculated_.size();
  speculated_reads_.clear();
  for (int e : speculated_) {
    if (!cache_->IsResident(layer, e)) speculated_reads_.push_back(e);
  }
  (void)cache_->Prefetch(layer, speculated_, /*lock=*/false, /*demand=*/false, /*guess=*/true);
  // Guesses no slot was free for were not read.
  std::erase_if(speculated_reads_, [&](int e) { return !cache_->IsResident(layer, e); });
  speculation_.reads += speculated_reads_.size();
}

absl::Status CachedExpertExecutor::RunResidentInParallel(
    int layer, const Routes& routes, const float* h, std::vector<int> order,
    const std::vector<std::vector<int>>& by_expert) {
  const size_t d = config_.d_model;
  const int top_k = routes.top_k;
  // The cache is not thread-safe: acquire every record here (none needs a
  // new read; one still in flight is waited for and counted as a stall).
  std::vector<const char*> records(config_.n_experts, nullptr);
  for (int e : order) {
    absl::StatusOr<const char*> rec = cache_->Acquire(layer, e);
    if (!rec.ok()) {
      cache_->ReleaseAll();
      return Annotate(rec.status(), absl::StrCat("expert ", e));
    }
    records[e] = *rec;
  }
  // One expert per work item on one thread, larger experts first.
  std::vector<int> by_size = order;
  std::stable_sort(by_size.begin(), by_size.end(), [&](int a, int b) {
    return by_expert[a].size() > by_expert[b].size();
  });
  std::mutex mu;
  pool_->ParallelFor(by_size.size(), [&](size_t begin, size_t end) {
    std::vector<float> in, y;
    FfnSparsity local;
    for (size_t i = begin; i < end; ++i) {
      const int e = by_size[i];
      const std::vector<int>& slots = by_expert[e];
      const int n = static_cast<int>(slots.size());
      in.resize(n * d);
      y.resize(n * d);
      GatherSlotRows(h, slots, top_k, d, in.data());
      ExpertFfn(RecordMatrices(records[e], layer), in.data(), n, y.data(), /*pool=*/nullptr,
                &local);
      ScatterSlotRows(y.data(), slots, d, slot_out_.data());
    }
    std::lock_guard<std::mutex> lock(mu);
    sparsity_ += local;
  });
  for (int e : order) cache_->Release(layer, e);
  return absl::OkStatus();
}

absl::Status CachedExpertExecutor::Run(int layer, const Routes& routes, const float* h,
                                       float* out) {
  const int n_tokens = routes.n_tokens, top_k = routes.top_k;
  const size_t d = config_.d_model;
  slot_out_.resize(static_cast<size_t>(n_tokens) * top_k * d);

  std::vector<std::vector<int>> by_expert(config_.n_experts);
  for (int i = 0; i < n_tokens * top_k; ++i) by_expert[routes.ids[i]].push_back(i);
  // Resident experts first, so reads of the others overlap their compute.
  std::vector<int> order = DistinctExperts(routes);
  std::stable_partition(order.begin(), order.end(),
                        [&](int e) { return cache_->IsResident(layer, e); });

  const int threads = pool_ != nullptr ? pool_->num_threads() : 1;
  const bool all_resident = order.empty() || cache_->IsResident(layer, order.back());
  if ((use_phases_ || as_stored_) && all_resident) {
    // Every expert has a slot: those whose bytes are there now in one
    // SparsePhases run (reads still in flight land meanwhile), then the rest.
    std::vector<int> ready, later;
    for (int e : order) (cache_->IsReady(layer, e) ? ready : later).push_back(e);
    ST_RETURN_IF_ERROR(RunPhases(layer, ready, by_expert, routes, h));
    ST_RETURN_IF_ERROR(RunPhases(layer, later, by_expert, routes, h));
    CombineSlots(routes, slot_out_.data(), d, out);
    return absl::OkStatus();
  }
  if (threads > 1 && all_resident && static_cast<int>(order.size()) >= 2 * threads) {
    ST_RETURN_IF_ERROR(RunResidentInParallel(layer, routes, h, order, by_expert));
    CombineSlots(routes, slot_out_.data(), d, out);
    return absl::OkStatus();
  }

  size_t next_fetch = 0;  // order[next_fetch..] have no read started by this loop yet
  for (size_t k = 0; k < order.size(); ++k) {
    const int e = order[k];
    // Reads for this expert and up to kLookahead after it, in order, stopping
    // at the first that finds no slot (so a later expert never takes the
    // slot the current one needs).
    for (size_t j = std::max(next_fetch, k); j < order.size() && j <= k + kLookahead; ++j) {
      (void)cache_->Prefetch(layer, {&order[j], 1}, /*lock=*/true);
      if (!cache_->IsResident(layer, order[j])) break;
      next_fetch = j + 1;
    }
    const std::vector<int>& slots = by_expert[e];
    if (use_phases_ || as_stored_) {
      ST_RETURN_IF_ERROR(RunPhases(layer, {e}, by_expert, routes, h));
      continue;
    }
    absl::StatusOr<const char*> rec = cache_->Acquire(layer, e);
    if (!rec.ok()) {
      cache_->ReleaseAll();
      return Annotate(rec.status(), absl::StrCat("expert ", e));
    }
    const int n = static_cast<int>(slots.size());
    gathered_.resize(n * d);
    expert_out_.resize(n * d);
    GatherSlotRows(h, slots, top_k, d, gathered_.data());
    ExpertFfn(RecordMatrices(*rec, layer), gathered_.data(), n, expert_out_.data(), pool_, &sparsity_);
    cache_->Release(layer, e);
    ScatterSlotRows(expert_out_.data(), slots, d, slot_out_.data());
  }
  CombineSlots(routes, slot_out_.data(), d, out);
  return absl::OkStatus();
}

}  // namespace st
