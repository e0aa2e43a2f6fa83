// What the gRPC service and the HTTP gateway share: the engine once the
// model is loaded (null before), the model's id and path, and the API key.
#pragma once

#include <atomic>
#include <string>

#include "coordinator/engine.h"

namespace st::serve {

struct ServeState {
  std::string model_id;    // e.g. "demo-4b-q4_0" (file name without .gguf)
  std::string model_path;
  std::string api_key;     // empty = no authentication
  std::atomic<Engine*> engine{nullptr};  // set once loading finished
};

// True if `header` is "Bearer <key>" for the state's key (constant-time
// compare), or no key is configured.
bool Authorized(const ServeState& state, std::string_view header);

}  // namespace st::serve
