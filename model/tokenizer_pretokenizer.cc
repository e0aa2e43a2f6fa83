#include "model/tokenizer_pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace st {
namespace {

// JavaScript's \s (ECMA-262 WhiteSpace + LineTerminator), see header.
#define ST_JS_SPACE                                               \
  "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}" \
  "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"

// clang-format off
constexpr char kPattern[] =
    "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"
    "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
    "|\\p{N}"
    "| ?[^" ST_JS_SPACE "\\p{L}\\p{N}]+[\\r\\n]*"
    "|[" ST_JS_SPACE "]*[\\r\\n]+"
    "|[" ST_JS_SPACE "]+(?![^" ST_JS_SPACE "])"
    "|[" ST_JS_SPACE "]+";
// clang-format on

#undef ST_JS_SPACE

std::string Pcre2Error(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

struct Qwen2PreTokenizer::Code {
  pcre2_code* re = nullptr;
  ~Code() { pcre2_code_free(re); }
};

Qwen2PreTokenizer::~Qwen2PreTokenizer() = default;

std::string_view Qwen2PreTokenizer::Pattern() { return kPattern; }

absl::StatusOr<std::unique_ptr<Qwen2PreTokenizer>> Qwen2PreTokenizer::Create() {
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP, &err, &err_offset, nullptr);
  if (re == nullptr) {
    return absl::InternalError(
        absl::StrFormat("compiling the Qwen2 pre-tokenizer regex failed at offset %d: %s",
                        err_offset, Pcre2Error(err)));
  }
  std::unique_ptr<Qwen2PreTokenizer> p(new Qwen2PreTokenizer);
  p->code_ = std::make_unique<Code>();
  p->code_->re = re;
  // JIT is optional (unsupported CPUs, or SELinux denying executable memory);
  // the interpreter gives identical results.
  p->jit_ = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
  return p;
}

absl::Status Qwen2PreTokenizer::Split(std::string_view text,
                                      std::vector<std::string_view>* pieces) const {
  if (text.empty()) return absl::OkStatus();
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(code_->re, nullptr), &pcre2_match_data_free);
  if (md == nullptr) return absl::ResourceExhaustedError("pcre2_match_data_create failed");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    // The caller validated the UTF-8, so skip PCRE2's own check (it would be
    // O(n) per call, i.e. O(n^2) over the loop).
    int rc =
        pcre2_match(code_->re, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(code_->re, subject, text.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                       md.get(), nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      return absl::InternalError(
          absl::StrFormat("Qwen2 pre-tokenizer regex failed at byte %d: %s", pos, Pcre2Error(rc)));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    const size_t start = ov[0], end = ov[1];
    // Text the regex skipped becomes its own piece (transformers.js
    // regexSplit keeps it). The Qwen2 pattern covers every character, so this
    // is only a safeguard.
    if (start > pos) pieces->push_back(text.substr(pos, start - pos));
    if (end == start) {  // cannot happen with this pattern; avoid looping
      return absl::InternalError("Qwen2 pre-tokenizer regex matched the empty string");
    }
    pieces->push_back(text.substr(start, end - start));
    pos = end;
  }
  if (pos < text.size()) pieces->push_back(text.substr(pos));
  return absl::OkStatus();
}

}  // namespace st
