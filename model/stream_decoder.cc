#include "model/stream_decoder.h"

#include "model/tokenizer_utf8.h"

namespace st {

std::string StreamDecoder::Push(int32_t id) {
  // (A held-back partial character stays held: the bytes that complete it
  // may follow the control token.)
  if (Hides(id)) return {};
  tokenizer_.AppendTokenBytes(id, &pending_);
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    const int n = internal::Utf8Classify(pending_, pos);
    if (n == 0) break;  // incomplete tail: keep it for the next token
    if (n > 0) {
      out.append(pending_, pos, static_cast<size_t>(n));
      pos += static_cast<size_t>(n);
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD for one maximal ill-formed subpart
      pos += static_cast<size_t>(-n);
    }
  }
  pending_.erase(0, pos);
  return out;
}

std::string StreamDecoder::Flush() {
  std::string out;
  internal::AppendSanitizedUtf8(pending_, &out);
  pending_.clear();
  return out;
}

StopStep FeedGenerated(int32_t id, bool is_stop_token, StreamDecoder& decoder, StopChecker& stop) {
  if (is_stop_token) return stop.Feed(id, {});
  if (decoder.Hides(id)) return stop.FeedHidden(id, decoder.tokenizer().TokenText(id));
  return stop.Feed(id, decoder.Push(id));
}

}  // namespace st
