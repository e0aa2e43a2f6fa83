#include "coordinator/http_gateway.h"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/openai_json.h"
#include "coordinator/peer_socket.h"
#include "coordinator/request_limits.h"
#include "httplib.h"

namespace st::serve {
namespace {

using nlohmann::json;

void SendError(httplib::Response& res, int status, std::string_view message,
               std::string_view error_code = {}) {
  res.status = status;
  if (status == 429) res.set_header("Retry-After", "1");  // the SDKs honour it when retrying
  res.set_content(Dump(ErrorJson(status, message, error_code)), "application/json");
}

// The method each route takes (those below): a request for one of these
// paths with another method is 405 with an Allow header, not 404.
const char* AllowedMethod(const std::string& path) {
  for (const char* get : {"/health", "/v1/health", "/metrics", "/v1/models", "/models"}) {
    if (path == get) return "GET";
  }
  for (const char* get : {"/v1/models/", "/models/"}) {
    if (path.size() > std::strlen(get) && path.compare(0, std::strlen(get), get) == 0) return "GET";
  }
  for (const char* post :
       {"/v1/completions", "/v1/chat/completions", "/completions", "/chat/completions"}) {
    if (path == post) return "POST";
  }
  return nullptr;
}

void SendStatus(httplib::Response& res, const absl::Status& status) {
  SendError(res, HttpStatusFor(status.code()), std::string(status.message()), ErrorCodeOf(status));
}

// Set by the pre-routing handler on a multipart request, whose
// Content-Type it replaces so that httplib reads the body as plain bytes.
constexpr char kMultipartRefused[] = "X-Smallthinker-Multipart";

// The request body, read through a content receiver: the plain route would
// have httplib parse a form-encoded body (what `curl -d` sends) and refuse
// one over 8 KiB with 413, whatever set_payload_max_length says.
absl::StatusOr<std::string> ReadBody(const httplib::Request& req, httplib::Response& res,
                                     const httplib::ContentReader& reader) {
  // A body refused is still read to its end (and dropped): what stayed
  // unread on the kept-alive connection was parsed as the next request
  // (cpp-httplib 0.11 keeps the connection open after a handler's
  // "Connection: close"). Up to kMaxDrainBytes; past that the read fails.
  constexpr size_t kMaxDrainBytes = 64 * kMaxBodyBytes;
  size_t seen = 0;
  if (req.has_header(kMultipartRefused)) {  // see the pre-routing handler
    (void)reader([&](const char*, size_t n) { return (seen += n) <= kMaxDrainBytes; });
    return absl::InvalidArgumentError("request body must be JSON, not multipart/form-data");
  }
  std::string body;
  bool too_large = false;
  const bool ok = reader([&](const char* data, size_t n) {
    seen += n;
    if (too_large || body.size() + n > kMaxBodyBytes) {
      too_large = true;
      std::string().swap(body);
      return seen <= kMaxDrainBytes;
    }
    body.append(data, n);
    return true;
  });
  if (too_large || res.status == 413) return absl::ResourceExhaustedError("request body too large");
  if (res.status == 415) return absl::InvalidArgumentError("unsupported Content-Encoding");
  if (!ok) return absl::InvalidArgumentError("cannot read the request body");
  return body;
}

// "Authorization: Bearer KEY" or "X-Api-Key: KEY" (any key when none is
// set).
bool KeyAccepted(const ServeState& state, const httplib::Request& req) {
  const std::string key = req.get_header_value("X-Api-Key");
  return Authorized(state, req.get_header_value("Authorization")) ||
         (!key.empty() && Authorized(state, absl::StrCat("Bearer ", key)));
}
constexpr char kKeyRefused[] = "missing or wrong API key (Authorization: Bearer KEY)";

// A response id's random part (24 hex digits): ids do not repeat across
// restarts, as OpenAI's do not (a counter started at 1 with every process).
std::string NewId() {
  thread_local std::mt19937_64 rng = [] {
    std::random_device rd;
    std::seed_seq seed{rd(), rd(), rd(), rd()};
    return std::mt19937_64(seed);
  }();
  return absl::StrFormat("%016x%08x", rng(), static_cast<uint32_t>(rng()));
}

}  // namespace

std::string MetricsText(const EngineStats& s) {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name,
                    " ", absl::StrFormat("%.17g", value), "\n");
  };
  metric("llamacpp:prompt_tokens_total", "counter", "Number of prompt tokens processed.",
         s.prompt_tokens_total);
  metric("llamacpp:prompt_seconds_total", "counter", "Prompt process time", s.prompt_seconds_total);
  metric("llamacpp:tokens_predicted_total", "counter", "Number of generation tokens processed.",
         s.tokens_predicted_total);
  metric("llamacpp:tokens_predicted_seconds_total", "counter",
         "Wall time of forward steps that decoded tokens", s.decode_seconds_total);
  metric("llamacpp:n_decode_total", "counter", "Forward steps run by the scheduler",
         s.steps_total);
  metric("llamacpp:predicted_tokens_seconds", "gauge",
         "Aggregate generation throughput over the last 10 s (or since start) in tokens/s",
         s.recent_tokens_per_second);
  metric("llamacpp:requests_processing", "gauge", "Number of requests processing.",
         s.requests_processing);
  metric("llamacpp:requests_deferred", "gauge", "Number of requests deferred.",
         s.requests_deferred);
  metric("smallthinker:requests_total", "counter", "Requests admitted to the queue",
         s.requests_total);
  metric("smallthinker:requests_rejected_total", "counter",
         "Requests refused (queue full or KV budget)", s.requests_rejected);
  metric("smallthinker:kv_cache_bytes", "gauge", "KV cache bytes held by active requests",
         s.kv_cache_bytes);
  metric("smallthinker:kv_cache_budget_bytes", "gauge", "KV cache budget (0 = unlimited)",
         s.kv_cache_budget_bytes);
  metric("smallthinker:uptime_seconds", "gauge", "Seconds since the engine started",
         s.uptime_seconds);
  if (s.cache.present) {
    const ExpertCacheCounters& c = s.cache.counters;
    metric("smallthinker:expert_cache_slots", "gauge", "Expert records the cache can hold",
           s.cache.slots);
    metric("smallthinker:expert_cache_resident", "gauge", "Cache slots holding a record",
           s.cache.resident);
    metric("smallthinker:expert_cache_requests_total", "counter",
           "Experts the steps needed (once per step, layer and expert)", c.requests);
    metric("smallthinker:expert_cache_hits_total", "counter",
           "Needed experts already resident or being read", c.hits);
    metric("smallthinker:expert_cache_misses_total", "counter",
           "Needed experts that required a new read", c.misses);
    metric("smallthinker:expert_cache_hit_rate", "gauge", "Hits over requests since start",
           s.cache.hit_rate());
    metric("smallthinker:expert_cache_reads_total", "counter", "Expert records read from the pack",
           c.reads);
    metric("smallthinker:expert_cache_bytes_read_total", "counter",
           "Bytes of expert records read from the pack", c.bytes_read);
    metric("smallthinker:expert_cache_evictions_total", "counter",
           "Resident expert records dropped to make room", c.evictions);
    metric("smallthinker:expert_cache_stall_seconds_total", "counter",
           "Time steps waited for expert reads", c.stall_seconds);
    metric("smallthinker:expert_cache_guesses_dropped_total", "counter",
           "Speculative reads dropped before they started (wrong, or their slot needed)",
           c.guesses_dropped);
  }
  if (s.workers.present) {
    const WorkerCounters& w = s.workers;
    metric("smallthinker:workers_up", "gauge", "Expert workers serving now", w.workers_up);
    metric("smallthinker:worker_steps_total", "counter", "Layer steps run through the cluster",
           w.steps);
    metric("smallthinker:worker_remote_items_total", "counter",
           "(token, expert) items computed by workers", w.remote_items);
    metric("smallthinker:worker_local_items_total", "counter",
           "Items computed by this server (own share and failover)", w.local_items);
    metric("smallthinker:worker_failover_items_total", "counter",
           "Items recomputed here after a worker failed", w.failover_items);
    metric("smallthinker:worker_failovers_total", "counter", "Worker failures during a step",
           w.failovers);
    metric("smallthinker:worker_timeouts_total", "counter",
           "Worker failures that were step timeouts", w.timeouts);
    metric("smallthinker:worker_readmissions_total", "counter",
           "Workers brought back after a failure", w.readmissions);
    metric("smallthinker:worker_bytes_sent_total", "counter", "Compute request payload bytes",
           w.bytes_sent);
    metric("smallthinker:worker_bytes_received_total", "counter", "Compute reply payload bytes",
           w.bytes_received);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<HttpGateway>> HttpGateway::Start(ServeState& state,
                                                                const HttpOptions& options) {
  std::unique_ptr<HttpGateway> g(new HttpGateway(state));
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
    g->server_ = std::make_unique<httplib::SSLServer>(options.tls_cert_file.c_str(),
                                                      options.tls_key_file.c_str());
    if (!g->server_->is_valid()) {
      return absl::InvalidArgumentError("cannot load the TLS certificate or key for HTTP");
    }
#else
    return absl::UnimplementedError("this build of cpp-httplib has no TLS support");
#endif
  } else {
    g->server_ = std::make_unique<httplib::Server>();
  }
  const int threads = std::max(4, options.threads);
  g->server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  g->server_->set_payload_max_length(kMaxBodyBytes);
  g->Routes(options.cors_origin);
  int port = options.port;
  errno = 0;
  if (port == 0) {
    port = g->server_->bind_to_any_port(options.host);
  } else if (!g->server_->bind_to_port(options.host, port)) {
    port = -1;
  }
  if (port < 0) {
    const int err = errno;
    return absl::UnavailableError(absl::StrCat("HTTP: cannot listen on ", options.host, ":",
                                               options.port, err != 0 ? ": " : "",
                                               err != 0 ? std::strerror(err) : ""));
  }
  g->port_ = port;
  g->thread_ = std::thread([gw = g.get()] {
    gw->server_->listen_after_bind();
    gw->listen_returned_.store(true);
  });
  // httplib's stop() does nothing before the thread has started listening
  // (Stop() retries it), so wait for that; a listen that ended at once is an
  // error.
  while (!g->server_->is_running() && !g->listen_returned_.load()) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  if (g->listen_returned_.load()) {
    return absl::UnavailableError(
        absl::StrCat("HTTP: listening on ", options.host, ":", port, " ended at once"));
  }
  return g;
}

HttpGateway::HttpGateway(ServeState& state) : state_(state) {}
HttpGateway::~HttpGateway() { Stop(); }

void HttpGateway::Stop() {
  // stop() is a no-op until the listen loop runs: repeat it until the loop
  // has returned (a gateway stopped right after Start: the model failed to
  // load), then join.
  // Once stop() has closed the listening socket, the loop still waits for
  // every connection's thread to end, and cpp-httplib 0.11.4 keeps an idle
  // kept-alive connection waiting for a next request for its whole 5 s
  // keep-alive timeout (serve took ~4-5 s to exit while a client held
  // one). So the read side of each idle connection is shut down: it reads
  // end-of-file and ends at once. Busy ones (a request read, its reply not
  // yet written) are left alone: httplib writes nothing more to a socket
  // that reads as closed, which cut replies still being sent (session 35's
  // first fix did that to every connection); each ends by itself after its
  // reply, as the listening socket is gone.
  constexpr int kQuietMs = 250;  // see ShutdownIdleConnectionReads
  if (server_ && thread_.joinable()) {
    while (!listen_returned_.load()) {
      server_->stop();
      if (port_ > 0) {
        ShutdownIdleConnectionReads(
            port_, [this](const std::string& addr, int port) { return Busy(addr, port); },
            kQuietMs);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  if (thread_.joinable()) thread_.join();
}

void HttpGateway::MarkBusy(const std::string& addr, int port) {
  absl::MutexLock lock(&busy_mu_);
  if (busy_.size() >= prune_at_) {
    absl::flat_hash_set<std::pair<std::string, int>> open;
    for (auto& peer : ConnectionPeers(port_)) open.insert(std::move(peer));
    absl::erase_if(busy_, [&open](const auto& peer) { return !open.contains(peer); });
    prune_at_ = std::max<size_t>(4096, 2 * busy_.size());
  }
  busy_.insert({addr, port});
}

void HttpGateway::MarkDone(const std::string& addr, int port) {
  absl::MutexLock lock(&busy_mu_);
  busy_.erase({addr, port});
}

bool HttpGateway::Busy(const std::string& addr, int port) {
  absl::MutexLock lock(&busy_mu_);
  return busy_.contains({addr, port});
}

void HttpGateway::Routes(const std::string& cors_origin) {
  httplib::Server& svr = *server_;
  ServeState& state = state_;

  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler already wrote an error
    if (const char* allowed = AllowedMethod(req.path); res.status == 404 && allowed != nullptr) {
      res.set_header("Allow", allowed);
      SendError(res, 405, absl::StrCat(req.method, " is not allowed here: use ", allowed));
      return;
    }
    const char* message = res.status == 404   ? "not found"
                          : res.status == 413 ? "request body too large"
                                              : "bad request";
    SendError(res, res.status, message);
  });
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res,
                               std::exception_ptr) { SendError(res, 500, "internal error"); });

  // CORS (when enabled), then authorization for everything but the health
  // endpoints: "Authorization: Bearer KEY", or "X-Api-Key: KEY". /metrics
  // needs the key too, as in llama-server (a Prometheus scrape sends it with
  // `authorization: {credentials: KEY}`); /v1/models too, as in OpenAI's API
  // (llama-server leaves it open).
  // Busy from here to the logger, which cpp-httplib calls once the reply
  // is written (see Stop()).
  svr.set_logger([this](const httplib::Request& req, const httplib::Response&) {
    MarkDone(req.remote_addr, req.remote_port);
  });
  svr.set_pre_routing_handler([this, &state, cors_origin](const httplib::Request& req,
                                                          httplib::Response& res) {
    MarkBusy(req.remote_addr, req.remote_port);
    if (!cors_origin.empty()) {
      res.set_header("Access-Control-Allow-Origin", cors_origin);
      if (cors_origin != "*") res.set_header("Vary", "Origin");
      if (req.method == "OPTIONS") {  // a preflight: no credentials are sent with it
        res.status = 204;
        res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        const std::string asked = req.get_header_value("Access-Control-Request-Headers");
        res.set_header("Access-Control-Allow-Headers",
                       asked.empty() ? "Authorization, Content-Type" : asked);
        res.set_header("Access-Control-Max-Age", "600");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    const bool open = req.path == "/health" || req.path == "/v1/health";
    // A request with a body is refused after it is read (the completion
    // handlers check the key; other paths have none, 404/405): refused here,
    // its unread body stayed on the kept-alive connection and was parsed as
    // the next request (cpp-httplib 0.11 sends a handler's "Connection:
    // close" but keeps the connection open).
    const bool has_body = req.method == "POST" || req.method == "PUT" ||
                          req.method == "PATCH" || req.method == "DELETE";
    // The marker is ours: a client's own is dropped.
    const_cast<httplib::Request&>(req).headers.erase(kMultipartRefused);
    if (has_body && req.is_multipart_form_data()) {
      // Refused (the completions take JSON) once read to its end, as plain
      // bytes: httplib's form parser stops at the first byte that is not
      // well-formed and left the rest to be parsed as the next request. The
      // request is httplib's own, not const; only this view of it is.
      auto& r = const_cast<httplib::Request&>(req);
      r.headers.erase("Content-Type");
      r.headers.emplace("Content-Type", "application/octet-stream");
      r.headers.emplace(kMultipartRefused, "1");
    }
    if (!open && !has_body && !KeyAccepted(state, req)) {
      SendError(res, 401, kKeyRefused);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  auto health = [&state](const httplib::Request&, httplib::Response& res) {
    if (state.engine.load() == nullptr) {
      SendError(res, 503, "Loading model");
      return;
    }
    res.set_content(R"({"status":"ok"})", "application/json");
  };
  svr.Get("/health", health);
  svr.Get("/v1/health", health);

  svr.Get("/metrics", [&state](const httplib::Request&, httplib::Response& res) {
    Engine* engine = state.engine.load();
    if (engine == nullptr) return SendError(res, 503, "Loading model");
    res.set_content(MetricsText(engine->stats()), "text/plain; version=0.0.4");
  });

  auto model_json = [&state] {
    return json{{"id", state.model_id},
                {"object", "model"},
                {"created", static_cast<int64_t>(std::time(nullptr))},
                {"owned_by", "smallthinker"}};
  };
  auto models = [&state, model_json](const httplib::Request&, httplib::Response& res) {
    if (state.engine.load() == nullptr) return SendError(res, 503, "Loading model");
    res.set_content(Dump({{"object", "list"}, {"data", json::array({model_json()})}}),
                    "application/json");
  };
  svr.Get("/v1/models", models);
  svr.Get("/models", models);  // for clients whose base URL lacks /v1
  // One model by id (the SDKs' models.retrieve): ours, or 404 as OpenAI's.
  auto one_model = [&state, model_json](const httplib::Request& req, httplib::Response& res) {
    if (state.engine.load() == nullptr) return SendError(res, 503, "Loading model");
    const std::string id = req.matches[1];
    if (id != state.model_id) {
      return SendError(res, 404, absl::StrCat("The model '", id, "' does not exist"),
                       "model_not_found");
    }
    res.set_content(Dump(model_json()), "application/json");
  };
  svr.Get(R"(/v1/models/(.+))", one_model);
  svr.Get(R"(/models/(.+))", one_model);

  auto complete = [&state](ApiKind kind) {
    return [&state, kind](const httplib::Request& req, httplib::Response& res,
                          const httplib::ContentReader& reader) {
      auto body = ReadBody(req, res, reader);
      if (!KeyAccepted(state, req)) return SendError(res, 401, kKeyRefused);
      if (!body.ok()) {
        // What is left of the body is still on the connection. cpp-httplib
        // 0.11 sends this header but keeps reading the connection, so only
        // a client that honours it is spared the leftover being parsed.
        res.set_header("Connection", "close");
        const bool large = body.status().code() == absl::StatusCode::kResourceExhausted;
        return SendError(res, large ? 413 : res.status == 415 ? 415 : 400,
                         std::string(body.status().message()));
      }
      Engine* engine = state.engine.load();
      if (engine == nullptr) return SendError(res, 503, "Loading model");
      auto parsed = ParseOpenAiRequest(kind, *body, engine->model().tokenizer());
      if (!parsed.ok()) {
        return SendStatus(res, parsed.status());
      }
      const bool stream = parsed->stream, include_usage = parsed->include_usage;
      auto submitted = engine->Submit(std::move(parsed->engine));
      if (!submitted.ok()) {
        return SendStatus(res, submitted.status());
      }
      ReplyContext ctx{kind,
                       absl::StrCat(kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-", NewId()),
                       state.model_id, static_cast<int64_t>(std::time(nullptr)), include_usage};
      std::shared_ptr<RequestStream> rs(std::move(*submitted));
      if (!stream) {
        // Nothing is sent before the end, so a client that leaves is only
        // seen on its socket: checked every 100 ms.
        const PeerSocket peer = FindPeerSocket(req.local_port, req.remote_addr, req.remote_port);
        absl::Time next_check = absl::Now() + absl::Milliseconds(100);
        std::string text;
        EngineEvent e;
        while (true) {
          const auto poll = rs->Next(&e, absl::Milliseconds(100));
          if (poll == RequestStream::Poll::kEnded) break;
          if (const absl::Time now = absl::Now(); now >= next_check) {
            next_check = now + absl::Milliseconds(100);
            if (peer.PeerClosed()) rs->Cancel();  // its final event ends the loop
          }
          if (poll == RequestStream::Poll::kTimeout) continue;
          text += e.text;
          if (!e.done) continue;
          if (!e.status.ok()) return SendStatus(res, e.status);
          res.set_content(Dump(FullReply(ctx, text, e.finish, e.usage)), "application/json");
        }
        return;
      }
      res.set_header("Cache-Control", "no-cache");
      httplib::ContentProviderWithoutLength events =
          [rs, ctx, include_usage](size_t, httplib::DataSink& sink) {
            auto send = [&](const json& j) {
              const std::string line = absl::StrCat("data: ", Dump(j), "\n\n");
              return sink.write(line.data(), line.size());
            };
            bool first = true;
            EngineEvent e;
            while (true) {
              const auto poll = rs->Next(&e, absl::Milliseconds(50));
              if (poll == RequestStream::Poll::kEnded) break;
              if (poll == RequestStream::Poll::kTimeout) {
                if (!sink.is_writable()) {
                  rs->Cancel();
                  return false;
                }
                continue;
              }
              if (e.done && !e.status.ok()) {
                send(ErrorJson(e.status));
                break;
              }
              bool ok = true;
              if (!e.text.empty() || first) ok = send(ChunkJson(ctx, e.text, first, FinishReason::kNone));
              first = false;
              if (ok && e.done) {
                ok = send(ChunkJson(ctx, "", false, e.finish));
                if (ok && include_usage) ok = send(UsageChunkJson(ctx, e.usage));
              }
              if (!ok) {
                rs->Cancel();
                return false;
              }
              if (e.done) break;
            }
            const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
            sink.done();
            return true;
          };
      // The client left before the end: stop generating.
      auto left = [rs](bool) { rs->Cancel(); };
      if (req.version == "HTTP/1.0") {
        // No chunked encoding in HTTP/1.0 (RFC 9112 6.1; nginx talks it to
        // upstreams by default): the events as they come, then the
        // connection closes.
        // httplib keeps a "Connection: Keep-Alive" 1.0 client's socket
        // open after the reply (its client then waited 5 s for the end):
        // the end of the events is sent as the end of the connection.
        res.set_header("Connection", "close");
        const PeerSocket peer = FindPeerSocket(req.local_port, req.remote_addr, req.remote_port);
        res.set_content_provider(
            "text/event-stream",
            [events = std::move(events), fd = peer.fd()](size_t offset, httplib::DataSink& sink) {
              const bool ok = events(offset, sink);
              if (fd >= 0) ::shutdown(fd, SHUT_WR);
              return ok;
            },
            std::move(left));
      } else {
        res.set_chunked_content_provider("text/event-stream", std::move(events), std::move(left));
      }
    };
  };
  svr.Post("/v1/completions", complete(ApiKind::kCompletion));
  svr.Post("/v1/chat/completions", complete(ApiKind::kChat));
  svr.Post("/completions", complete(ApiKind::kCompletion));
  svr.Post("/chat/completions", complete(ApiKind::kChat));
}

}  // namespace st::serve
