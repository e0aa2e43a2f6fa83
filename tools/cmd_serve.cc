// `smallthinker serve`: the gRPC InferenceService and the OpenAI-compatible
// HTTP API over one model, with continuous batching of concurrent requests.
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <future>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/host_port.h"
#include "common/units.h"
#include "coordinator/engine.h"
#include "coordinator/grpc_server.h"
#include "coordinator/http_gateway.h"
#include "model/model.h"
#include "tools/commands.h"
#include "tools/offload_flags.h"
#include "tools/sampling_flags.h"
#include "tools/worker_flags.h"

namespace st::tools {

void RegisterServe(CLI::App& app) {
  struct Flags {
    std::string model;
    std::string grpc_listen = "127.0.0.1:50051";
    std::string http_listen = "127.0.0.1:8080";
    std::string cors_origin;
    int parallel = 4, queue = 64, threads = 0, batch = 256;
    int prefill_while_decoding = EngineOptions{}.prefill_while_decoding;
    std::string cpus;
    KQuantFlags kquant;
    int64_t ctx = 4096;
    std::string kv_budget = "0";
    std::string api_key, tls_cert, tls_key;
    OffloadFlags offload;
    WorkerFlags workers;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "Serve a model to applications: a streaming gRPC InferenceService\n"
      "(proto/smallthinker/v1/inference.proto, with grpc.health.v1 and reflection) and an\n"
      "OpenAI-compatible HTTP API (POST /v1/chat/completions, /v1/completions; GET /v1/models,\n"
      "/health, /metrics). Concurrent requests are batched: every step runs one token of each\n"
      "generating request (plus prompt chunks of new ones) through the model together.\n"
      "Listens on loopback by default. Ctrl-C stops it.\n"
      "Example:  smallthinker serve -m model.gguf --parallel 8\n"
      "          curl http://127.0.0.1:8080/v1/chat/completions -d "
      "'{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}'");
  cmd->add_option("-m,--model", f->model, "SmallThinker GGUF file")->required();
  cmd->add_option("--grpc-listen", f->grpc_listen,
                  "gRPC address HOST:PORT (port 0 = any free port; 'off' = no gRPC)")
      ->capture_default_str();
  cmd->add_option("--http-listen", f->http_listen,
                  "HTTP address HOST:PORT (port 0 = any free port; 'off' = no HTTP)")
      ->capture_default_str();
  cmd->add_option("--cors-origin", f->cors_origin,
                  "Let browser pages from this origin call the HTTP API (e.g. "
                  "http://localhost:3000, or * for any): answers CORS preflights and adds "
                  "Access-Control-Allow-Origin; off by default");
  cmd->add_option("--parallel", f->parallel, "Requests generating at once (batched together)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--queue", f->queue,
                  "Requests that may wait for a slot; beyond that: HTTP 429 / RESOURCE_EXHAUSTED")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  cmd->add_option("-c,--ctx,--ctx-size", f->ctx,
                  "Context size per request in tokens (its KV cache; requests may ask for less)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 30))
      ->capture_default_str();
  cmd->add_option("-b,--batch-size", f->batch,
                  "Tokens per forward step (decode + prompt chunks); prompts that arrive while "
                  "no request is decoding go through in steps this large")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--prefill-while-decoding", f->prefill_while_decoding,
                  "Prompt tokens per step while any request is decoding (0 = up to -b): "
                  "bounds the pause a new prompt puts between the others' tokens")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  cmd->add_option("--kv-budget", f->kv_budget,
                  "Bytes all requests' KV caches may hold together, e.g. 2GiB (0 = unlimited); "
                  "requests wait for room")
      ->type_name("SIZE")
      ->capture_default_str();
  cmd->add_option("-t,--threads", f->threads, "Kernel threads (0 = all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  AddCpusFlag(cmd, &f->cpus);
  AddKQuantFlags(cmd, &f->kquant, /*offer_as_q8=*/false);
  AddOffloadFlags(cmd, &f->offload);
  AddWorkerFlags(cmd, &f->workers);
  CLI::Option* api_key = cmd->add_option("--api-key", f->api_key,
                  "Require this key: HTTP 'Authorization: Bearer KEY', gRPC metadata "
                  "'authorization: Bearer KEY' (default: $SMALLTHINKER_API_KEY)");
  cmd->add_option("--tls-cert", f->tls_cert, "PEM certificate: serve gRPC and HTTP over TLS");
  cmd->add_option("--tls-key", f->tls_key, "PEM private key for --tls-cert");
  cmd->callback([f, api_key] {
    if (api_key->count() > 0 && f->api_key.empty()) {
      // An empty key would have turned authentication off without a word.
      return Fail(absl::InvalidArgumentError(
          "--api-key is empty: give a key, or leave the flag out to serve without one"));
    }
    if (f->api_key.empty()) {
      if (const char* env = std::getenv("SMALLTHINKER_API_KEY")) {
        f->api_key = env;
        if (f->api_key.empty()) {  // e.g. a compose file's ${KEY} with KEY unset
          std::fprintf(stderr, "warning: SMALLTHINKER_API_KEY is set but empty: serving without "
                               "an API key\n");
        }
      }
    }
    auto budget = ParseByteSize(f->kv_budget);
    if (!budget.ok()) return Fail(budget.status());
    if (absl::Status s = CheckKQuantFlags(f->kquant); !s.ok()) return Fail(s);
    if (f->tls_cert.empty() != f->tls_key.empty()) {
      return Fail(absl::InvalidArgumentError("--tls-cert and --tls-key go together"));
    }
    if (f->grpc_listen == "off" && f->http_listen == "off") {
      return Fail(absl::InvalidArgumentError(
          "--grpc-listen off and --http-listen off: nothing would be served"));
    }
    for (const std::string* a : {&f->grpc_listen, &f->http_listen}) {  // before loading
      std::string host;
      int port;
      if (*a == "off") continue;
      if (a->rfind("unix:", 0) == 0) {
        return Fail(absl::InvalidArgumentError(absl::StrCat(
            a == &f->grpc_listen ? "--grpc-listen" : "--http-listen", " '", *a,
            "': serve listens on HOST:PORT only (Unix sockets are for workers)")));
      }
      if (auto s = SplitHostPort(*a, &host, &port); !s.ok()) return Fail(s);
    }
    // The model is loaded after the servers listen (health says NOT_SERVING
    // meanwhile); a path that cannot be a model is refused before they do.
    if (std::error_code ec; !std::filesystem::is_regular_file(f->model, ec)) {
      return Fail(ec ? absl::NotFoundError(absl::StrCat("model '", f->model, "': ", ec.message()))
                     : absl::InvalidArgumentError(
                           absl::StrCat("model '", f->model, "' is not a regular file")));
    }
    // Signals are taken by sigwait below; every thread inherits the mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    // One thread takes them from the start: while the model loads and warms
    // up (seconds to minutes for a large pack) a signal ends the process at
    // once, as there is nothing to save yet; once serving, it is handed to
    // the shutdown below. The thread is detached and owns what it touches.
    struct SignalState {
      std::atomic<bool> serving{false};
      std::promise<int> received;
    };
    auto sig_state = std::make_shared<SignalState>();
    std::future<int> received = sig_state->received.get_future();
    std::thread([sig_state, signals] {
      // Dies of the signal itself, as an unhandled one would (exit status and
      // what systemd and shells report).
      const auto die_of = [](int sig) {
        std::signal(sig, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
        raise(sig);
        std::_Exit(128 + sig);  // not reached
      };
      int sig = 0;
      sigwait(&signals, &sig);
      if (!sig_state->serving.load()) {
        std::fprintf(stderr, "signal %d while loading: exiting\n", sig);
        die_of(sig);
      }
      sig_state->received.set_value(sig);
      // A second signal during a stuck shutdown (a worker not answering,
      // saving stats to a slow disk) ends the process at once.
      sigwait(&signals, &sig);
      std::fprintf(stderr, "signal %d again: exiting without finishing the shutdown\n", sig);
      die_of(sig);
    }).detach();

    serve::ServeState state;
    state.model_path = f->model;
    state.model_id = std::filesystem::path(f->model).stem().string();
    state.api_key = f->api_key;
    std::unique_ptr<serve::GrpcServer> grpc;
    std::unique_ptr<serve::HttpGateway> http;
    if (f->grpc_listen != "off") {
      std::string host;
      int port;
      if (auto s = SplitHostPort(f->grpc_listen, &host, &port); !s.ok()) return Fail(s);
      if (!IsLoopback(host)) {
        std::fprintf(stderr, "warning: gRPC listens beyond loopback on %s\n", host.c_str());
      }
      // Room for every generating and queued call, plus health watchers and
      // gRPC's own pollers; a flood of Watch streams is refused past it.
      auto g = serve::StartGrpcServer(
          state, {.listen = f->grpc_listen,
                  .tls_cert_file = f->tls_cert,
                  .tls_key_file = f->tls_key,
                  .max_threads = std::clamp(2 * (f->parallel + f->queue) + 64, 128, 2048)});
      if (!g.ok()) return Fail(g.status());
      grpc = std::move(*g);
      std::printf("grpc listening on %s:%d\n", host.c_str(), grpc->port);
    }
    if (f->http_listen != "off") {
      serve::HttpOptions o;
      if (auto s = SplitHostPort(f->http_listen, &o.host, &o.port); !s.ok()) return Fail(s);
      if (!IsLoopback(o.host)) {
        std::fprintf(stderr, "warning: HTTP listens beyond loopback on %s\n", o.host.c_str());
      }
      o.tls_cert_file = f->tls_cert;
      o.tls_key_file = f->tls_key;
      // One thread per open connection (httplib): room for every generating
      // and queued request, plus idle keep-alive clients and health checks.
      o.threads = std::clamp(2 * (f->parallel + f->queue) + 16, 64, 1024);
      o.cors_origin = f->cors_origin;
      auto h = serve::HttpGateway::Start(state, o);
      if (!h.ok()) return Fail(h.status());
      http = std::move(*h);
      std::printf("http listening on %s:%d\n", o.host.c_str(), http->port());
    }
    std::fflush(stdout);

    // Test hook: lets tests observe the "loading" state (health NOT_SERVING).
    if (const char* delay = std::getenv("ST_SERVE_TEST_LOAD_DELAY_MS")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(delay)));
    }
    auto model =
        Model::Load(f->model, ModelOptions{.threads = f->threads,
                                           .cpus = CpusFrom(f->cpus),
                                           .max_batch = f->batch,
                                           .dense_kquant_as_stored = DenseKQuantAsStored(f->kquant)});
    if (!model.ok()) return Fail(model.status());
    f->ctx = ContextSize((*model)->config(), f->ctx);
    // Experts on workers (--workers / --cluster-config), or from the pack
    // beside the model (as run/chat do); with --memory-budget the plan
    // reserves KV caches for the requests that can run at once (--parallel,
    // at most -b: each decodes a token per step) of --ctx tokens, and the
    // engine is held to that.
    const int parallel = std::min(f->parallel, (*model)->forward().max_batch());
    f->offload.margin_bytes = kServeMarginBytes;  // request bodies and their JSON
    // --kv-budget below parallel x ctx: the plan reserves only it, and the
    // expert cache gets the rest (it had reserved parallel x ctx anyway).
    f->offload.kv_cap_bytes = *budget;
    auto offload = ApplyOffloadOrWorkers(**model, f->offload, f->workers, f->ctx, parallel);
    if (!offload.ok()) return Fail(offload.status());
    uint64_t kv_budget = *budget;
    if (*offload != nullptr && (*offload)->plan().budget > 0) {
      const uint64_t planned = (*offload)->plan().kv;
      if (kv_budget > planned) {
        return Fail(absl::InvalidArgumentError(absl::StrCat(
            "--kv-budget ", FormatBytes(kv_budget), " is more than --memory-budget leaves for KV "
            "caches (", FormatBytes(planned), " for ", parallel, " requests of ", f->ctx,
            " tokens); lower it, or drop it to use the plan's")));
      }
      if (kv_budget == 0) kv_budget = planned;
    }
    // Health turns SERVING after a 32-token warm-up, so the first request
    // does not pay for faulting in the weights.
    EngineOptions eo{.parallel = f->parallel,
                     .queue = f->queue,
                     .context_size = f->ctx,
                     .kv_budget_bytes = kv_budget,
                     .prefill_while_decoding = f->prefill_while_decoding,
                     .warmup_tokens = 32};
    auto engine = std::make_unique<Engine>(**model, eo);
    if (*offload != nullptr) (*offload)->SkipStatsSoFar((*model)->forward());  // the warm-up's
    const EngineOptions& used = engine->options();
    if (const uint64_t one = engine->KvBytesFor(used.context_size);
        used.kv_budget_bytes > 0 && one > used.kv_budget_bytes) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "the KV budget (", FormatBytes(used.kv_budget_bytes),
          ") holds no request of the default context (", used.context_size,
          " tokens need ", FormatBytes(one), "); raise --kv-budget or lower --ctx")));
    }
    if (used.parallel < f->parallel) {
      std::fprintf(stderr,
                   "warning: --parallel %d lowered to %d: a step holds at most -b %d tokens, one "
                   "per generating request\n",
                   f->parallel, used.parallel, (*model)->forward().max_batch());
    }
    state.engine.store(engine.get());
    if (grpc) grpc->SetServing(true);
    sig_state->serving.store(true);  // before "ready:", which tests act on
    std::printf("ready: %s (parallel %d, queue %d, ctx %lld, threads %d)\n", state.model_id.c_str(),
                used.parallel, used.queue, static_cast<long long>(used.context_size),
                (*model)->pool().num_threads());
    std::fflush(stdout);

    const int sig = received.get();
    std::fprintf(stderr, "signal %d: shutting down\n", sig);
    if (grpc) grpc->SetServing(false);
    engine->Shutdown();  // ends every open stream
    if (http) http->Stop();
    if (grpc) grpc->Shutdown(std::chrono::seconds(2));
    state.engine.store(nullptr);
    // The served traffic's routing counts, for the next start's warm cache.
    SaveOffloadStats(*offload, **model, f->offload);
  });
}

}  // namespace st::tools
