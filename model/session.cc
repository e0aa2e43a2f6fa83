#include "model/session.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/stream_decoder.h"

namespace st {
namespace {
double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
}  // namespace

Session::Session(Model& model, int64_t context_size)
    : model_(model),
      kv_(model.config(), std::clamp<int64_t>(context_size, 1, model.config().context_length),
          model.forward().max_batch(), model.options().kv_type) {}

size_t Session::ReusablePrefix(absl::Span<const int32_t> prompt) const {
  size_t n = 0;
  while (n < tokens_.size() && n < prompt.size() && tokens_[n] == prompt[n]) ++n;
  if (n == prompt.size() && n > 0) --n;  // always evaluate at least one token for logits
  // A sliding-window ring of capacity window + max_batch - 1 still holds the
  // window before position n only if no position >= n + max_batch was ever
  // written (it would have overwritten one of them). Global layers never wrap.
  for (int l = 0; l < model_.config().n_layers; ++l) {
    if (kv_.capacity(l) < kv_.max_tokens() &&
        kv_end_ - static_cast<int64_t>(n) > kv_.max_batch()) {
      return 0;
    }
  }
  return n;
}

absl::StatusOr<std::vector<float>> Session::Evaluate(absl::Span<const int32_t> tokens,
                                                     bool all_logits) {
  std::vector<float> logits;
  const int64_t pos0 = static_cast<int64_t>(tokens_.size());
  // Even a failed run may have written some of these positions.
  kv_end_ = std::max<int64_t>(kv_end_, std::min(pos0 + static_cast<int64_t>(tokens.size()),
                                                kv_.max_tokens()));
  ST_RETURN_IF_ERROR(model_.forward().Run(kv_, pos0, tokens, all_logits, &logits));
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  return logits;
}

absl::StatusOr<GenerateResult> Session::Generate(
    absl::Span<const int32_t> prompt, const GenerateOptions& options,
    const std::function<void(std::string_view)>& on_text) {
  ST_RETURN_IF_ERROR(ValidateSamplingParams(options.sampling));
  if (prompt.empty()) return absl::InvalidArgumentError("empty prompt");
  if (static_cast<int64_t>(prompt.size()) >= context_size()) {
    return absl::InvalidArgumentError(absl::StrCat("prompt of ", prompt.size(),
                                                   " tokens does not fit the context of ",
                                                   context_size(), " tokens"));
  }
  GenerateResult r;
  r.prompt_ids.assign(prompt.begin(), prompt.end());
  const Tokenizer& tok = model_.tokenizer();

  auto t0 = std::chrono::steady_clock::now();
  const size_t keep = ReusablePrefix(prompt);
  tokens_.resize(keep);
  if (keep == 0) kv_end_ = 0;  // every position read from now on is rewritten first
  r.prompt_tokens_evaluated = static_cast<int>(prompt.size() - keep);
  ST_ASSIGN_OR_RETURN(std::vector<float> logits, Evaluate(prompt.subspan(keep), false));
  auto t1 = std::chrono::steady_clock::now();
  r.prompt_seconds = Seconds(t0, t1);

  Sampler sampler(options.sampling);
  r.seed = sampler.seed();
  std::vector<int32_t> stop_ids;
  if (!options.ignore_eos) {
    for (int32_t id = 0; id < tok.vocab_size(); ++id) {
      if (tok.IsEndOfGeneration(id)) stop_ids.push_back(id);
    }
  }
  const int64_t room = context_size() - static_cast<int64_t>(prompt.size());
  const int max_tokens = static_cast<int>(
      options.max_tokens > 0 ? std::min<int64_t>(options.max_tokens, room) : room);
  StopChecker stop(options.stop, stop_ids, max_tokens);
  StreamDecoder decoder(tok);
  auto emit = [&](const std::string& text) {
    if (text.empty()) return;
    r.text += text;
    if (on_text) on_text(text);
  };
  while (true) {
    const int32_t id = sampler.Sample(logits, tokens_);
    r.generated_ids.push_back(id);
    const bool is_stop_token = std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end();
    StopStep step = FeedGenerated(id, is_stop_token, decoder, stop);
    emit(step.text);
    if (step.finish != FinishReason::kNone) {
      r.finish = step.finish;
      break;
    }
    ST_ASSIGN_OR_RETURN(logits, Evaluate(absl::MakeConstSpan(&id, 1), false));
  }
  // A stop string drops what follows it; otherwise emit any held-back text.
  const bool stopped_by_string = r.finish == FinishReason::kStop &&
                                 std::find(stop_ids.begin(), stop_ids.end(),
                                           r.generated_ids.back()) == stop_ids.end();
  if (!stopped_by_string) emit(stop.Flush() + decoder.Flush());
  r.decode_seconds = Seconds(t1, std::chrono::steady_clock::now());
  return r;
}

}  // namespace st
