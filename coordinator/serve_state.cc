#include "coordinator/serve_state.h"

#include "absl/strings/match.h"

namespace st::serve {

bool Authorized(const ServeState& state, std::string_view header) {
  if (state.api_key.empty()) return true;
  constexpr std::string_view kBearer = "Bearer ";  // the scheme is case-insensitive (RFC 9110)
  if (!absl::StartsWithIgnoreCase(absl::string_view(header.data(), header.size()),
                                  absl::string_view(kBearer.data(), kBearer.size()))) {
    return false;
  }
  const std::string_view got = header.substr(kBearer.size());
  const std::string& want = state.api_key;
  unsigned diff = got.size() != want.size();
  for (size_t i = 0; i < want.size(); ++i) {
    diff |= static_cast<unsigned char>(want[i]) ^
            static_cast<unsigned char>(i < got.size() ? got[i] : 0);
  }
  return diff == 0;
}

}  // namespace st::serve
