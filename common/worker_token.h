// The shared token of a coordinator and its workers (sent as gRPC metadata
// "x-st-token" on every call).
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace st {

// A token is printable ASCII without spaces, bytes 0x21-0x7E: gRPC aborts
// the process that adds any other byte to a text metadata value ("Illegal
// header value"), and spaces at either end would not survive proxies and
// shell quoting. "" (no token) is accepted. INVALID_ARGUMENT names `what`
// (e.g. "--token") and the offending byte's position, never the token.
absl::Status ValidateWorkerToken(std::string_view token, std::string_view what);

}  // namespace st
