#include "model/tokenizer_utf8.h"

#include <cstdlib>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "utf8proc.h"

namespace st::internal {
namespace {

// Valid range of the second byte for lead byte `b0` (Unicode Table 3-7);
// later continuation bytes are always 0x80..0xBF.
struct LeadInfo {
  int len;         // total sequence length, 0 if b0 cannot start a sequence
  uint8_t lo, hi;  // allowed range of the second byte
};

LeadInfo Lead(uint8_t b0) {
  if (b0 < 0x80) return {1, 0, 0};
  if (b0 >= 0xC2 && b0 <= 0xDF) return {2, 0x80, 0xBF};
  if (b0 == 0xE0) return {3, 0xA0, 0xBF};
  if (b0 >= 0xE1 && b0 <= 0xEC) return {3, 0x80, 0xBF};
  if (b0 == 0xED) return {3, 0x80, 0x9F};  // excludes surrogates
  if (b0 >= 0xEE && b0 <= 0xEF) return {3, 0x80, 0xBF};
  if (b0 == 0xF0) return {4, 0x90, 0xBF};
  if (b0 >= 0xF1 && b0 <= 0xF3) return {4, 0x80, 0xBF};
  if (b0 == 0xF4) return {4, 0x80, 0x8F};  // <= U+10FFFF
  return {0, 0, 0};                        // 0x80..0xC1, 0xF5..0xFF
}

}  // namespace

int Utf8Classify(std::string_view s, size_t pos) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + pos;
  const size_t avail = s.size() - pos;
  const LeadInfo lead = Lead(p[0]);
  if (lead.len == 0) return -1;
  if (lead.len == 1) return 1;
  for (int i = 1; i < lead.len; ++i) {
    if (static_cast<size_t>(i) >= avail) return 0;  // truncated, still a prefix
    const uint8_t lo = i == 1 ? lead.lo : 0x80;
    const uint8_t hi = i == 1 ? lead.hi : 0xBF;
    if (p[i] < lo || p[i] > hi) return -i;  // bytes [0, i) are the maximal subpart
  }
  return lead.len;
}

std::optional<size_t> FindInvalidUtf8(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    // ASCII fast path.
    if (static_cast<uint8_t>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const int n = Utf8Classify(s, pos);
    if (n <= 0) return pos;
    pos += static_cast<size_t>(n);
  }
  return std::nullopt;
}

void AppendSanitizedUtf8(std::string_view s, std::string* out) {
  size_t pos = 0;
  while (pos < s.size()) {
    const int n = Utf8Classify(s, pos);
    if (n > 0) {
      out->append(s.data() + pos, static_cast<size_t>(n));
      pos += static_cast<size_t>(n);
    } else {
      out->append("\xEF\xBF\xBD");  // U+FFFD
      pos = n == 0 ? s.size() : pos + static_cast<size_t>(-n);
    }
  }
}

char32_t DecodeUtf8Char(std::string_view s, size_t* pos) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + *pos;
  if (p[0] < 0x80) {
    ++*pos;
    return p[0];
  }
  if (p[0] < 0xE0) {
    *pos += 2;
    return (char32_t{p[0] & 0x1Fu} << 6) | (p[1] & 0x3Fu);
  }
  if (p[0] < 0xF0) {
    *pos += 3;
    return (char32_t{p[0] & 0x0Fu} << 12) | (char32_t{p[1] & 0x3Fu} << 6) | (p[2] & 0x3Fu);
  }
  *pos += 4;
  return (char32_t{p[0] & 0x07u} << 18) | (char32_t{p[1] & 0x3Fu} << 12) |
         (char32_t{p[2] & 0x3Fu} << 6) | (p[3] & 0x3Fu);
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

absl::StatusOr<std::string> NormalizeNfc(std::string_view s) {
  bool ascii = true;
  for (char c : s) ascii &= static_cast<uint8_t>(c) < 0x80;
  if (ascii) return std::string(s);
  utf8proc_uint8_t* dst = nullptr;
  // Explicit length (no UTF8PROC_NULLTERM): embedded NULs are ordinary chars.
  const utf8proc_ssize_t n = utf8proc_map(
      reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
      &dst, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(dst, &std::free);
  if (n < 0) {
    const auto code = n == UTF8PROC_ERROR_NOMEM ? absl::StatusCode::kInternal
                                                : absl::StatusCode::kInvalidArgument;
    return absl::Status(code, absl::StrFormat("NFC normalization failed: %s", utf8proc_errmsg(n)));
  }
  return std::string(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
}

}  // namespace st::internal
