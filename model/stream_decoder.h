// Incremental detokenizer for streaming generation: turns a sequence of token
// ids into text chunks that are always well-formed UTF-8.
//
// A token may end in the middle of a multi-byte character (byte-level BPE
// splits emoji and CJK characters across tokens), so bytes that could still
// become a character are held back until the next Push. Bytes that can never
// become a character (e.g. 0xFF, or a lead byte followed by a non-
// continuation byte) are emitted at once as U+FFFD, one per maximal ill-formed
// subpart (the WHATWG / ICU rule). Flush() emits a held-back tail as U+FFFD.
// The concatenation of all outputs equals the lossy UTF-8 decoding of
// Tokenizer::Decode(all ids).
//
// Holds a reference to the tokenizer, which must outlive it.
// Thread-compatible (one decoder per generation stream).
#pragma once

#include <cstdint>
#include <string>

#include "model/stop_condition.h"
#include "model/tokenizer.h"

namespace st {

class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool show_control = false)
      : tokenizer_(tokenizer), show_control_(show_control) {}

  // Adds one token; returns the text that became complete (possibly empty).
  std::string Push(int32_t id);
  // Whether Push shows nothing for `id` (a control token, show_control off).
  bool Hides(int32_t id) const {
    return !show_control_ && tokenizer_.token_type(id) == TokenType::kControl;
  }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  // Returns whatever is held back (as U+FFFD) and resets the decoder.
  std::string Flush();
  // Bytes currently held back (0..3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer& tokenizer_;
  bool show_control_;
  std::string pending_;  // an incomplete but still valid UTF-8 prefix
};

// Feeds generated token `id` to `stop`: a stop token as such, a token the
// decoder hides by its text (so a stop string such as "<|im_start|>" still
// ends generation, showing nothing of it), any other by the text the
// decoder shows.
StopStep FeedGenerated(int32_t id, bool is_stop_token, StreamDecoder& decoder, StopChecker& stop);

}  // namespace st
