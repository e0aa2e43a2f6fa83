#include "common/host_port.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace st {

absl::Status SplitHostPort(const std::string& s, std::string* host, int* port) {
  if (s.size() > 2 && s.front() == '[' && s.back() == ']') {  // its last colon is the host's
    return absl::InvalidArgumentError(absl::StrCat("'", s, "' has no port; expected ", s, ":PORT"));
  }
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) {
    return absl::InvalidArgumentError(absl::StrCat("expected HOST:PORT, got '", s, "'"));
  }
  std::string h = s.substr(0, colon);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') {
    h = h.substr(1, h.size() - 2);
  } else if (h.find(':') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("an IPv6 host needs brackets, e.g. [::1]:PORT; got '", s, "'"));
  }
  const std::string digits = s.substr(colon + 1);
  int p = -1;
  const bool all_digits = std::all_of(digits.begin(), digits.end(),
                                      [](char c) { return absl::ascii_isdigit(c); });
  if (!all_digits || digits.size() > 5 || !absl::SimpleAtoi(digits, &p) || p > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad port '", digits, "' in '", s, "' (expected 0-65535)"));
  }
  *host = h;
  *port = p;
  return absl::OkStatus();
}

absl::Status ValidateListenAddress(const std::string& s) {
  if (absl::StartsWith(s, "unix:")) {
    if (s.size() == 5) return absl::InvalidArgumentError("unix: needs a socket path (unix:PATH)");
    return absl::OkStatus();
  }
  std::string host;
  int port;
  return SplitHostPort(s, &host, &port);
}

bool IsLoopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

}  // namespace st
