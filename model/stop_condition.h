// When to stop generating, and which decoded text is safe to show so far.
//
// Stop strings may span several tokens, so text that could still turn out to
// be the start of a stop string is held back until it either completes one
// (then it is dropped) or cannot any more (then it is emitted). Matching is
// on bytes; a held-back suffix always starts where a stop string starts, so
// with valid UTF-8 stop strings no character is ever split by the holding.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace st {

enum class FinishReason {
  kNone,    // keep generating
  kStop,    // a stop token or a stop string was generated
  kLength,  // max_tokens tokens were generated
};

// "" / "stop" / "length": the OpenAI `finish_reason` spelling.
std::string_view FinishReasonName(FinishReason reason);

// What one Feed() produced.
struct StopStep {
  // Text that is now final and can be streamed to the client (may be empty).
  // When `finish` != kNone this is the rest of the output: the held-back text
  // is included (or, on a stop string, the part before it), and Flush() will
  // return "".
  std::string text;
  FinishReason finish = FinishReason::kNone;
  // Which stop fired when finish == kStop: an index into the constructor's
  // `stop_strings`, or the stop token id; -1 for the other kind.
  int stop_string_index = -1;
  int32_t stop_token_id = -1;
};

// Tracks one generation. Usage:
//
//   StopChecker stop(request.stop, {eos_id, im_end_id}, request.max_tokens);
//   for (;;) {
//     int32_t id = sampler.Sample(logits, history);
//     StopStep step = stop.Feed(id, tokenizer.Decode(id));
//     Stream(step.text);
//     if (step.finish != FinishReason::kNone) break;
//   }
//   // Ended for another reason (client cancelled, context full)?
//   Stream(stop.Flush());
//
// Thread-compatible. Memory: the held-back text is shorter than the longest
// stop string; each Feed costs O(held + piece) per stop string.
class StopChecker {
 public:
  // Empty stop strings are ignored. max_tokens <= 0 means no length limit.
  StopChecker(std::vector<std::string> stop_strings, std::vector<int32_t> stop_token_ids,
              int max_tokens);

  // Accounts for one generated token and its decoded text piece. In order:
  // 1. A stop token finishes with kStop; its own piece is not emitted.
  // 2. Otherwise the piece is appended; if a stop string now occurs, the text
  //    before its earliest occurrence is emitted, the stop string and anything
  //    after it are dropped, and the result is kStop. (Several stop strings at
  //    the same position: the first in the constructor's list is reported.)
  // 3. Otherwise, once max_tokens tokens (this one included) have been fed,
  //    the result is kLength with all remaining text.
  // 4. Otherwise the longest suffix that is a proper prefix of some stop
  //    string is held back and everything before it is emitted.
  // Feeding after a finish is a caller bug: it returns "" and the same reason.
  StopStep Feed(int32_t token_id, std::string_view piece);
  // A token whose text is not shown (a control token): a stop token, or a
  // stop string inside `text`, finishes with kStop and the held-back text;
  // then max_tokens as in Feed; otherwise nothing is emitted and the held
  // text stays (the shown text around the token is matched as one).
  StopStep FeedHidden(int32_t token_id, std::string_view text);

  // Returns and clears the held-back text. For generation that ended without
  // a finishing Feed (e.g. cancelled); after a finish it returns "".
  std::string Flush();

  FinishReason finish_reason() const { return finish_; }
  int num_tokens() const { return num_tokens_; }

 private:
  // Length of the longest suffix of held_ that is a proper prefix of a stop
  // string.
  size_t HoldLength() const;

  std::vector<std::string> stop_strings_;  // as given (empty ones never match)
  std::vector<int32_t> stop_token_ids_;
  int max_tokens_;
  int num_tokens_ = 0;
  std::string held_;  // pending text: never contains a whole stop string
  FinishReason finish_ = FinishReason::kNone;
  StopStep last_finish_;  // returned (with empty text) if Feed is called again
};

}  // namespace st
