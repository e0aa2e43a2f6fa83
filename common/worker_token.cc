#include "common/worker_token.h"

#include "absl/strings/str_cat.h"

namespace st {

absl::Status ValidateWorkerToken(std::string_view token, std::string_view what) {
  for (size_t i = 0; i < token.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(token[i]);
    if (c < 0x21 || c > 0x7E) {
      return absl::InvalidArgumentError(absl::StrCat(
          absl::string_view(what.data(), what.size()), ": byte ", i + 1, " of the token (0x",
          absl::Hex(c, absl::kZeroPad2),
          ") is not printable ASCII; a worker token may use only the characters ! to ~ "
          "(0x21-0x7E: letters, digits, punctuation; no spaces, control characters or "
          "non-ASCII), e.g. from `openssl rand -hex 32`"));
    }
  }
  return absl::OkStatus();
}

}  // namespace st
