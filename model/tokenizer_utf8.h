// UTF-8 helpers shared by the tokenizer, the stream decoder and their tests:
// strict validation (Unicode Table 3-7: no overlongs, no surrogates, nothing
// above U+10FFFF), replacement of ill-formed bytes by U+FFFD using the
// "maximal subpart" rule (Unicode 15 §3.9, same as WHATWG / ICU / node's
// TextDecoder), and NFC normalization through utf8proc.
//
// All functions are pure and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace st::internal {

// Classifies the bytes of `s` starting at `pos` (< s.size()):
//   > 0: a complete, well-formed character of that many bytes;
//   = 0: a well-formed but truncated prefix that runs to the end of `s`
//        (more bytes could complete it);
//   < 0: ill-formed; -n is the length of the maximal subpart (n >= 1) that a
//        decoder replaces by one U+FFFD.
int Utf8Classify(std::string_view s, size_t pos);

// Offset of the first byte that is not part of a complete well-formed
// character (a truncated tail counts as invalid), or nullopt if `s` is valid.
std::optional<size_t> FindInvalidUtf8(std::string_view s);

// Appends `s` to `out` with every maximal ill-formed subpart (including a
// truncated tail) replaced by U+FFFD. Valid input is copied unchanged.
void AppendSanitizedUtf8(std::string_view s, std::string* out);

// Decodes the well-formed character at `*pos` and advances `*pos` past it.
// Precondition: Utf8Classify(s, *pos) > 0.
char32_t DecodeUtf8Char(std::string_view s, size_t* pos);

// Appends the UTF-8 encoding of code point `cp` (<= 0x10FFFF, not a
// surrogate) to `out`.
void AppendUtf8(char32_t cp, std::string* out);

// Unicode NFC of valid UTF-8 `s` (utf8proc tables, Unicode 15.0 in Debian 12).
// ASCII input is returned unchanged without calling utf8proc. Invalid UTF-8
// or an allocation failure in utf8proc is INVALID_ARGUMENT / INTERNAL.
absl::StatusOr<std::string> NormalizeNfc(std::string_view s);

}  // namespace st::internal
