// Token sampling: repetition penalties, top-k / top-p / min-p truncation,
// temperature, and a seeded, reproducible draw.
//
// Pipeline (llama.cpp's common default order, minus the samplers we do not
// implement): penalties -> top-k -> top-p -> min-p -> temperature -> softmax
// -> draw. Truncation therefore always sees temperature-1 probabilities, and
// temperature only reshapes the distribution over the survivors.
//
// Cost for vocab_size V (151,936 for SmallThinker): with top-k on, one pass
// over the logits into a k-bounded heap (no V-sized candidate list; large k
// falls back to nth_element), then work on k candidates only. With top-k off:
// O(V) for the copy, softmax and min-p; top-p sorts only as long a prefix as
// it needs (256 first, growing 8x), so a peaked distribution never pays for a
// full O(V log V) sort.
//
// Numerics: probabilities are accumulated in double. Reproducibility: the
// PRNG is std::mt19937_64 (fully specified by the standard) with our own
// 53-bit uniform conversion, so a seed gives the same tokens on every
// platform as long as the logits and std::exp agree bit for bit.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace st {

struct SamplingParams {
  // <= 0 means greedy: argmax of the penalized logits, ties -> lowest id.
  // (ValidateSamplingParams rejects < 0; use 0 to ask for greedy.)
  float temperature = 0.6f;
  // Keep the top_k highest logits; <= 0 turns top-k off.
  int top_k = 20;
  // Nucleus sampling; >= 1 turns top-p off.
  float top_p = 0.95f;
  // Keep tokens with p >= min_p * p_max; <= 0 turns min-p off.
  float min_p = 0.0f;
  // llama.cpp semantics, for each distinct token in the penalty window:
  // logit > 0 ? logit / repeat_penalty : logit * repeat_penalty. 1 = off.
  float repeat_penalty = 1.0f;
  // Penalty window: the last repeat_last_n tokens of the history. 0 disables
  // all three penalties; -1 means the whole history.
  int repeat_last_n = 64;
  // OpenAI semantics over the same window, applied after repeat_penalty:
  // logit -= presence_penalty * (count > 0) + frequency_penalty * count.
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // 0 = draw a random seed once at construction (reported by Sampler::seed()).
  uint64_t seed = 0;
};

// OK, or INVALID_ARGUMENT naming the first bad parameter and its value:
// temperature finite and >= 0; top_p in (0, 1]; min_p in [0, 1];
// repeat_penalty finite and > 0; repeat_last_n >= -1; presence_penalty and
// frequency_penalty finite and in [-2, 2] (the OpenAI range). top_k and seed
// accept any value.
absl::Status ValidateSamplingParams(const SamplingParams& params);

// One token under consideration. `p` is scratch: only ComputeProbabilities
// defines it, and the filters below may overwrite it.
struct Candidate {
  int32_t id;
  float logit;
  float p;
};

// Strict "better than" order used everywhere: higher logit first, ties ->
// lower id first. Ordering by probability is the same order (softmax is
// monotonic), and ordering by logit keeps it exact.
inline bool CandidateBefore(const Candidate& a, const Candidate& b) {
  return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
}

// Applies the repetition, presence and frequency penalties of `params` in
// place to `logits` (indexed by token id), counting tokens in the last
// params.repeat_last_n entries of `history`. Each distinct token is penalized
// once (frequency scales by its count). History ids outside
// [0, logits.size()) are ignored.
void ApplyPenalties(const SamplingParams& params, absl::Span<const int32_t> history,
                    absl::Span<float> logits);

// Sets each candidate's p = softmax(logit / temperature) over `candidates`.
// Requires a non-empty span, at least one finite logit and temperature > 0.
void ComputeProbabilities(absl::Span<Candidate> candidates, float temperature = 1.0f);

// Keeps the k candidates that come first in CandidateBefore order and leaves
// them sorted in that order. k >= size keeps all (and sorts them); k <= 0 is a
// no-op. O(n + k log k).
void ApplyTopK(int k, std::vector<Candidate>* candidates);

// Nucleus: computes p = softmax(logit) over the input, then keeps the
// shortest prefix, in CandidateBefore order, whose cumulative p is >= top_p
// (always at least one candidate; all of them if rounding keeps the total
// below top_p). Survivors are left sorted, with `p` still the probabilities
// over the input (not renormalized). top_p >= 1 is a no-op.
void ApplyTopP(float top_p, std::vector<Candidate>* candidates);

// Keeps candidates with p >= min_p * p_max (computed in log space as
// logit - max_logit >= log(min_p), so min_p = 1 keeps exactly the maximal
// logits), preserving order. min_p <= 0 is a no-op. Leaves `p` untouched.
void ApplyMinP(float min_p, std::vector<Candidate>* candidates);

// Draws one token from a SamplingParams pipeline.
//
// Thread-compatible: Sample mutates the PRNG and scratch buffers; use one
// Sampler per sequence. Holds O(vocab_size) scratch, reused across calls.
class Sampler {
 public:
  // Requires ValidateSamplingParams(params).ok() (CHECKed): validate user
  // input first.
  explicit Sampler(const SamplingParams& params);

  // Returns the next token id in [0, logits.size()). `history` holds the
  // tokens so far (prompt and generated), oldest first; only its last
  // repeat_last_n entries matter. `logits` must be non-empty, and contain at
  // least one finite value and no NaN.
  int32_t Sample(absl::Span<const float> logits, absl::Span<const int32_t> history);

  // The seed in use: params.seed, or the one drawn when params.seed == 0
  // (never 0, so it can be passed back to reproduce a run).
  uint64_t seed() const { return seed_; }

  const SamplingParams& params() const { return params_; }

 private:
  // Uniform double in [0, 1) from the top 53 bits of one PRNG output.
  double NextUniform();

  SamplingParams params_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::vector<float> penalized_;       // scratch: logits after penalties
  std::vector<Candidate> candidates_;  // scratch: the surviving tokens
};

}  // namespace st
