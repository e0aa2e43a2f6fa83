#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "kernels/argmax.h"

namespace st {
namespace {

// Top-p sorts a prefix of this many candidates first and grows it by
// kTopPGrowth until the nucleus fits.
constexpr size_t kTopPFirstPrefix = 256;
constexpr size_t kTopPGrowth = 8;

bool PenaltiesActive(const SamplingParams& params) {
  return params.repeat_last_n != 0 &&
         (params.repeat_penalty != 1.0f || params.presence_penalty != 0.0f ||
          params.frequency_penalty != 0.0f);
}

// Top-k selects through a bounded heap while k <= n / kHeapSelectRatio
// (one float compare rejects almost every token), else with nth_element.
constexpr size_t kHeapSelectRatio = 16;

// Offers `c` to `heap`, which keeps the best `k` candidates seen so far as a
// std heap ordered by CandidateBefore, i.e. with the worst kept one on top.
inline void OfferToHeap(const Candidate& c, size_t k, std::vector<Candidate>* heap) {
  if (heap->size() < k) {
    heap->push_back(c);
    std::push_heap(heap->begin(), heap->end(), CandidateBefore);
  } else if (CandidateBefore(c, heap->front())) {
    std::pop_heap(heap->begin(), heap->end(), CandidateBefore);
    heap->back() = c;
    std::push_heap(heap->begin(), heap->end(), CandidateBefore);
  }
}

absl::Status OutOfRange(absl::string_view name, absl::string_view range, double value) {
  return absl::InvalidArgumentError(
      absl::StrCat("sampling parameter ", name, " must be ", range, ", got ", value));
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& params) {
  if (!std::isfinite(params.temperature) || params.temperature < 0) {
    return OutOfRange("temperature", "finite and >= 0 (0 = greedy)", params.temperature);
  }
  if (!(params.top_p > 0 && params.top_p <= 1)) {
    return OutOfRange("top_p", "in (0, 1] (1 = off)", params.top_p);
  }
  if (!(params.min_p >= 0 && params.min_p <= 1)) {
    return OutOfRange("min_p", "in [0, 1] (0 = off)", params.min_p);
  }
  if (!std::isfinite(params.repeat_penalty) || params.repeat_penalty <= 0) {
    return OutOfRange("repeat_penalty", "finite and > 0 (1 = off)", params.repeat_penalty);
  }
  if (params.repeat_last_n < -1) {
    return OutOfRange("repeat_last_n", ">= -1 (-1 = whole history, 0 = no penalties)",
                      params.repeat_last_n);
  }
  if (!(params.presence_penalty >= -2 && params.presence_penalty <= 2)) {
    return OutOfRange("presence_penalty", "in [-2, 2]", params.presence_penalty);
  }
  if (!(params.frequency_penalty >= -2 && params.frequency_penalty <= 2)) {
    return OutOfRange("frequency_penalty", "in [-2, 2]", params.frequency_penalty);
  }
  return absl::OkStatus();
}

void ApplyPenalties(const SamplingParams& params, absl::Span<const int32_t> history,
                    absl::Span<float> logits) {
  if (!PenaltiesActive(params) || history.empty()) return;
  size_t window = history.size();
  if (params.repeat_last_n > 0) {
    window = std::min(window, static_cast<size_t>(params.repeat_last_n));
  }
  // The window is short (64 by default): sort a copy and walk the runs.
  std::vector<int32_t> ids(history.end() - window, history.end());
  std::sort(ids.begin(), ids.end());
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j < ids.size() && ids[j] == ids[i]) ++j;
    const int32_t id = ids[i];
    const int count = static_cast<int>(j - i);
    i = j;
    if (id < 0 || static_cast<size_t>(id) >= logits.size()) continue;
    float& logit = logits[id];
    logit = logit > 0 ? logit / params.repeat_penalty : logit * params.repeat_penalty;
    logit -= params.presence_penalty + params.frequency_penalty * static_cast<float>(count);
    // A tiny repeat_penalty (1e-40 is valid) overflows: +inf logits made
    // NaN probabilities, and min-p then erased every candidate.
    logit = std::clamp(logit, -std::numeric_limits<float>::max(),
                       std::numeric_limits<float>::max());
  }
}

void ComputeProbabilities(absl::Span<Candidate> candidates, float temperature) {
  CHECK(!candidates.empty()) << "ComputeProbabilities needs at least one candidate";
  DCHECK_GT(temperature, 0.0f);
  float max_logit = -std::numeric_limits<float>::infinity();
  for (const Candidate& c : candidates) max_logit = std::max(max_logit, c.logit);
  if (max_logit == -std::numeric_limits<float>::infinity()) {
    // Every logit is -inf: no information, fall back to uniform.
    for (Candidate& c : candidates) c.p = 1.0f / static_cast<float>(candidates.size());
    return;
  }
  // Weights in float (expf is several times cheaper than exp over a whole
  // vocabulary and exact to ~1 ulp); the sum, which can have 152K terms, in
  // double.
  // Divide rather than multiply by 1 / temperature: for a denormal
  // temperature the reciprocal is inf and 0 * inf would be NaN.
  double sum = 0;
  for (Candidate& c : candidates) {
    c.p = std::exp((c.logit - max_logit) / temperature);  // unnormalized, in [0, 1]
    sum += c.p;
  }
  const double inv_sum = 1.0 / sum;
  for (Candidate& c : candidates) c.p = static_cast<float>(c.p * inv_sum);
}

void ApplyTopK(int k, std::vector<Candidate>* candidates) {
  if (k <= 0) return;
  auto& c = *candidates;
  const size_t keep = std::min(c.size(), static_cast<size_t>(k));
  if (keep <= c.size() / kHeapSelectRatio) {
    std::vector<Candidate> heap;
    heap.reserve(keep);
    for (const Candidate& cand : c) OfferToHeap(cand, keep, &heap);
    c.swap(heap);
  } else if (keep < c.size()) {
    std::nth_element(c.begin(), c.begin() + keep, c.end(), CandidateBefore);
    c.resize(keep);
  }
  std::sort(c.begin(), c.end(), CandidateBefore);
}

void ApplyTopP(float top_p, std::vector<Candidate>* candidates) {
  if (top_p >= 1.0f || candidates->empty()) return;
  auto& c = *candidates;
  ComputeProbabilities(absl::MakeSpan(c));
  // Invariant: [0, sorted) is sorted and holds the `sorted` best candidates.
  size_t sorted = 0;
  double cumulative = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (i == sorted) {
      const size_t end = std::min(c.size(), std::max(kTopPFirstPrefix, sorted * kTopPGrowth));
      if (end < c.size()) {
        std::nth_element(c.begin() + sorted, c.begin() + end, c.end(), CandidateBefore);
      }
      std::sort(c.begin() + sorted, c.begin() + end, CandidateBefore);
      sorted = end;
    }
    cumulative += c[i].p;
    if (cumulative >= top_p) {
      c.resize(i + 1);
      return;
    }
  }
  // Rounding kept the total below top_p: keep everything, sorted.
}

void ApplyMinP(float min_p, std::vector<Candidate>* candidates) {
  if (min_p <= 0.0f || candidates->empty()) return;
  auto& c = *candidates;
  float max_logit = -std::numeric_limits<float>::infinity();
  for (const Candidate& cand : c) max_logit = std::max(max_logit, cand.logit);
  // p / p_max = exp(logit - max_logit) >= min_p, compared in log space (one
  // log instead of an exp per token); min_p = 1 gives threshold 0 exactly.
  const double log_threshold = std::log(static_cast<double>(min_p));
  // The maxima always stay (inf - inf would be NaN for a +inf maximum).
  std::erase_if(c, [&](const Candidate& cand) {
    return cand.logit != max_logit &&
           !(static_cast<double>(cand.logit) - max_logit >= log_threshold);
  });
}

Sampler::Sampler(const SamplingParams& params) : params_(params), seed_(params.seed) {
  const absl::Status status = ValidateSamplingParams(params);
  CHECK(status.ok()) << "Sampler: " << status;
  if (seed_ == 0) {
    std::random_device device;
    while (seed_ == 0) seed_ = (static_cast<uint64_t>(device()) << 32) | device();
  }
  rng_.seed(seed_);
}

double Sampler::NextUniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int32_t Sampler::Sample(absl::Span<const float> logits, absl::Span<const int32_t> history) {
  CHECK(!logits.empty()) << "Sampler::Sample needs logits";
  absl::Span<const float> scores = logits;
  if (PenaltiesActive(params_) && !history.empty()) {
    penalized_.assign(logits.begin(), logits.end());
    ApplyPenalties(params_, history, absl::MakeSpan(penalized_));
    scores = penalized_;
  }
  if (params_.temperature <= 0.0f) {
    return static_cast<int32_t>(Argmax(scores.data(), scores.size()));
  }

  const size_t k = params_.top_k > 0 ? static_cast<size_t>(params_.top_k) : scores.size();
  candidates_.clear();
  if (k <= scores.size() / kHeapSelectRatio) {
    // Select straight from the logits: no vocab-sized candidate list at all.
    candidates_.reserve(k);
    for (size_t i = 0; i < scores.size(); ++i) {
      OfferToHeap(Candidate{static_cast<int32_t>(i), scores[i], 0.0f}, k, &candidates_);
    }
    std::sort(candidates_.begin(), candidates_.end(), CandidateBefore);
  } else {
    candidates_.resize(scores.size());
    for (size_t i = 0; i < scores.size(); ++i) {
      candidates_[i] = Candidate{static_cast<int32_t>(i), scores[i], 0.0f};
    }
    if (k < scores.size()) ApplyTopK(static_cast<int>(k), &candidates_);
  }
  ApplyTopP(params_.top_p, &candidates_);
  ApplyMinP(params_.min_p, &candidates_);
  ComputeProbabilities(absl::MakeSpan(candidates_), params_.temperature);

  double total = 0;
  for (const Candidate& c : candidates_) total += c.p;
  const double target = NextUniform() * total;
  double cumulative = 0;
  for (const Candidate& c : candidates_) {
    cumulative += c.p;
    if (target < cumulative) return c.id;
  }
  // Only reachable through rounding: return the last token with mass.
  for (auto it = candidates_.rbegin(); it != candidates_.rend(); ++it) {
    if (it->p > 0) return it->id;
  }
  return candidates_.front().id;
}

}  // namespace st
