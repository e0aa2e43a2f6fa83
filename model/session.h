// One conversation with a model: its KV cache, the tokens in it, and the
// generate loop (prefill, sample, stream text, stop).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/stop_condition.h"

namespace st {

struct GenerateOptions {
  SamplingParams sampling;
  int max_tokens = 256;            // <= 0: until the context is full
  std::vector<std::string> stop;   // stop strings (not emitted)
  bool ignore_eos = false;         // keep going past end-of-generation tokens
};

struct GenerateResult {
  std::vector<int32_t> prompt_ids;     // the prompt as given
  std::vector<int32_t> generated_ids;  // sampled tokens, stop token included
  std::string text;                    // emitted text (stop string excluded)
  FinishReason finish = FinishReason::kNone;
  int prompt_tokens_evaluated = 0;     // prompt tokens not already in the cache
  double prompt_seconds = 0;
  double decode_seconds = 0;           // from the end of prefill to the last token
  uint64_t seed = 0;
};

// Thread-compatible. Borrows the model (which must outlive it).
class Session {
 public:
  // context_size is clamped to [1, the model's context_length].
  Session(Model& model, int64_t context_size);

  int64_t context_size() const { return kv_.max_tokens(); }
  const std::vector<int32_t>& tokens() const { return tokens_; }

  // Makes `prompt` the session's history (reusing the cached common prefix),
  // then samples up to max_tokens tokens, calling on_text with each safe-to-
  // show piece of text as it is produced.
  absl::StatusOr<GenerateResult> Generate(
      absl::Span<const int32_t> prompt, const GenerateOptions& options,
      const std::function<void(std::string_view)>& on_text = nullptr);

  // Runs tokens through the model and returns logits for every one of them
  // [n, vocab] (used by tests and tools that inspect logits).
  absl::StatusOr<std::vector<float>> Evaluate(absl::Span<const int32_t> tokens, bool all_logits);

  void Reset() {
    tokens_.clear();
    kv_end_ = 0;
  }

 private:
  // Keeps the longest reusable prefix of tokens_ shared with `prompt`.
  size_t ReusablePrefix(absl::Span<const int32_t> prompt) const;

  Model& model_;
  KvCache kv_;
  std::vector<int32_t> tokens_;  // tokens whose keys/values are in kv_, in order
  // One past the highest position written to kv_ since the last full reset
  // (>= tokens_.size(): rolled-back or failed batches leave stale entries,
  // which sliding-window rings must not be trusted to have kept clear of).
  int64_t kv_end_ = 0;
};

}  // namespace st
