// `smallthinker worker`: serve a share of a model's experts over gRPC to a
// coordinator (run/chat/bench --workers).
#include <csignal>
#include <cstdio>
#include <memory>
#include <thread>

#include "common/host_port.h"
#include "common/units.h"
#include "expert_worker/worker_server.h"
#include "tools/commands.h"
#include "tools/sampling_flags.h"

namespace st::tools {

void RegisterWorker(CLI::App& app) {
  struct Flags {
    WorkerOptions options;
    std::string memory_budget;
    std::string cpus;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "worker",
      "Serve ReGLU experts to a coordinator over gRPC (ExpertService, health, reflection).\n"
      "The coordinator must load the same GGUF (checked by fingerprint). Prints\n"
      "'listening ADDRESS' on stdout once ready. A worker serves one coordinator at a\n"
      "time: a second coordinator's assignment replaces the first's, whose steps it\n"
      "then refuses (the first computes them itself and retries the worker).");
  cmd->add_option("-m,--model", f->options.model_path, "SmallThinker GGUF file")->required();
  cmd->add_option("--listen", f->options.listen,
                  "Address to bind: HOST:PORT (port 0 = any free port), or unix:PATH for a "
                  "Unix domain socket (coordinator on the same host)")
      ->capture_default_str();
  cmd->add_option("--memory-budget", f->memory_budget,
                  "Memory for held experts, e.g. 2GiB (default: all experts)")
      ->type_name("SIZE");
  cmd->add_option("--token", f->options.token,
                  "Shared token required on every call, characters ! to ~ (printable ASCII, no "
                  "spaces; default: $ST_WORKER_TOKEN or none)");
  cmd->add_option("--tls-cert", f->options.tls_cert, "PEM certificate chain: serve TLS");
  cmd->add_option("--tls-key", f->options.tls_key, "PEM private key for --tls-cert");
  cmd->add_option("--tls-ca", f->options.tls_ca,
                  "PEM CA: require client certificates signed by it (mutual TLS)");
  cmd->add_option("-t,--threads", f->options.threads, "Kernel threads (0 = all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  AddCpusFlag(cmd, &f->cpus);
  cmd->callback([f] {
    // gRPC would read "HOST" as port 443 and wrap ports above 65535.
    if (auto s = ValidateListenAddress(f->options.listen); !s.ok()) return Fail(s);
    if (!f->memory_budget.empty()) {
      auto budget = ParseByteSize(f->memory_budget);
      if (!budget.ok()) return Fail(budget.status());
      f->options.memory_budget = *budget;
    }
    f->options.cpus = CpusFrom(f->cpus);
    if (f->options.token.empty()) {
      if (const char* env = std::getenv("ST_WORKER_TOKEN")) f->options.token = env;
    }
    // Beyond loopback, anyone who reaches the port can Assign the worker
    // (taking it from its coordinator) or load it with Compute calls.
    std::string host;
    int port = 0;
    if (UnixSocketPath(f->options.listen).empty() &&
        SplitHostPort(f->options.listen, &host, &port).ok() && !IsLoopback(host) &&
        f->options.token.empty() && f->options.tls_ca.empty()) {
      std::fprintf(stderr,
                   "warning: listening beyond loopback on %s with no --token (or "
                   "$ST_WORKER_TOKEN) and no --tls-ca: anyone who reaches the port can use "
                   "this worker\n",
                   host.c_str());
    }
    // Signals are handled by one thread that shuts the server down.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    auto server = WorkerServer::Start(f->options);
    if (!server.ok()) return Fail(server.status());
    std::printf("listening %s\n", (*server)->address().c_str());
    std::fflush(stdout);
    std::thread signals([&] {
      int sig = 0;
      sigwait(&set, &sig);
      std::fprintf(stderr, "worker: signal %d, shutting down\n", sig);
      (*server)->Shutdown();
    });
    (*server)->Wait();  // until the signal thread's Shutdown has finished
    signals.join();
  });
}

}  // namespace st::tools
