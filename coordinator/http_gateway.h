// The OpenAI-compatible HTTP API (cpp-httplib): POST /v1/completions and
// /v1/chat/completions (streaming as server-sent events or whole), GET
// /v1/models, GET /health and GET /metrics (Prometheus text, llama.cpp's
// metric names where they fit). Errors use OpenAI's error JSON shape.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/serve_state.h"

namespace httplib {
class Server;
}

namespace st::serve {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0 = pick a free port
  std::string tls_cert_file, tls_key_file;  // both set = HTTPS
  int threads = 16;  // connection handler threads
  // Browser pages from this origin ("*" = any) may call the API: CORS
  // preflights (OPTIONS) are answered before the API key check and every
  // reply carries Access-Control-Allow-Origin. Empty = no CORS headers.
  std::string cors_origin;
};

// Runs the server on its own thread until Stop() or destruction.
class HttpGateway {
 public:
  static absl::StatusOr<std::unique_ptr<HttpGateway>> Start(ServeState& state,
                                                            const HttpOptions& options);
  ~HttpGateway();
  int port() const { return port_; }
  void Stop();

 private:
  explicit HttpGateway(ServeState& state);
  void Routes(const std::string& cors_origin);
  // A connection (by its peer) is busy from the moment its request's
  // headers are read (pre-routing) until its reply has been written (the
  // logger), so that Stop() never shuts one down mid-reply.
  void MarkBusy(const std::string& addr, int port);
  void MarkDone(const std::string& addr, int port);
  bool Busy(const std::string& addr, int port);

  ServeState& state_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listen_returned_{false};  // set by thread_ when listening ends
  int port_ = 0;
  absl::Mutex busy_mu_;
  absl::flat_hash_set<std::pair<std::string, int>> busy_ ABSL_GUARDED_BY(busy_mu_);
  // busy_ size at which entries of closed connections are dropped (a reply
  // whose headers could not be written never reaches the logger).
  size_t prune_at_ ABSL_GUARDED_BY(busy_mu_) = 4096;
};

// The Prometheus exposition of the engine's statistics.
std::string MetricsText(const EngineStats& stats);

}  // namespace st::serve
