#include "expert_worker/worker_server.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/host_port.h"
#include "common/pem_file.h"
#include "common/status_macros.h"
#include "common/worker_token.h"
#include "glog/logging.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "hwy/targets.h"
#include "model/local_expert_executor.h"
#include "proto/protobuf_log.h"
#include "storage/expert_pack.h"

namespace st {
namespace {


// Expert evaluations (one token through one expert) per second, measured on
// layer 0 with a batch of 1 (the decode shape): the best of 5 windows of
// ~10 ms, so that a window shared with another busy process does not make
// this worker look several times slower, and take no experts at placement.
double MeasureSpeed(const ExpertStore& store, const ModelConfig& config, ThreadPool* pool) {
  std::vector<float> x(config.d_model, 0.01f), y(config.d_model);
  const ExpertMatrices m = store.Get(0, 0);
  auto once = [&] {
    LocalExpertExecutor::ComputeExpert(m.gate, m.up, m.down, m.down_transposed, x.data(), 1,
                                       y.data(), pool);
  };
  once();  // warm up (page in)
  double best = 0;
  for (int window = 0; window < 5; ++window) {
    const auto start = std::chrono::steady_clock::now();
    int n = 0;
    double seconds = 0;
    do {
      once();
      ++n;
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    } while (seconds < 0.01 && n < 500);
    best = std::max(best, n / std::max(seconds, 1e-9));
  }
  return best;
}

// Whether a process accepts connections on the Unix socket of `address`
// (unix:PATH) right now.
bool SomeoneListens(const std::string& address) {
  const std::string path = UnixSocketPath(address);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(sa.sun_path)) return false;
  std::memcpy(sa.sun_path, path.data(), path.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool ok = connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) == 0;
  close(fd);
  return ok;
}

}  // namespace

bool IsUnixSocketAddress(const std::string& address) {
  return address.rfind("unix:", 0) == 0 || address.rfind("unix-abstract:", 0) == 0;
}

std::string WorkerServer::address() const {
  if (IsUnixSocketAddress(listen_)) return listen_;
  return absl::StrCat(listen_.substr(0, listen_.rfind(':')), ":", port_);
}

std::string DispatchedIsa() {
  // What this CPU supports of what was compiled (on aarch64 the SVE targets
  // are not: kernels/CMakeLists.txt).
  const int64_t targets = hwy::SupportedTargets() & HWY_TARGETS;
  return hwy::TargetName(targets & -targets);  // lowest bit = best target
}

absl::StatusOr<std::unique_ptr<WorkerServer>> WorkerServer::Start(const WorkerOptions& options) {
  // Before loading anything: a coordinator could never send such a token
  // (gRPC refuses metadata values outside printable ASCII).
  ST_RETURN_IF_ERROR(ValidateWorkerToken(options.token, "worker --token / $ST_WORKER_TOKEN"));
  // gRPC replaces the socket file of a unix: address: a second worker would
  // take the path over from a live one (whose coordinator would then talk
  // to the newcomer). A file nobody listens on, left by a worker that was
  // killed, is replaced as before. Checked before loading (fail fast) and
  // again just before binding.
  auto path_taken = [&options]() -> absl::Status {
    if (UnixSocketPath(options.listen).empty() || !SomeoneListens(options.listen)) {
      return absl::OkStatus();
    }
    return absl::AlreadyExistsError(absl::StrCat(
        "address in use: a process is already listening on '", options.listen,
        "' (another worker?); stop it or choose another path"));
  };
  ST_RETURN_IF_ERROR(path_taken());
  // What can be checked without the model is, before loading it (seconds
  // to minutes for a large one): the TLS files and the listen address.
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (!options.tls_cert.empty() || !options.tls_key.empty()) {
    if (options.tls_cert.empty() || options.tls_key.empty()) {
      return absl::InvalidArgumentError("TLS needs both --tls-cert and --tls-key");
    }
    grpc::SslServerCredentialsOptions ssl(
        options.tls_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                               : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    ST_ASSIGN_OR_RETURN(pair.private_key, ReadPemFile(options.tls_key, PemKind::kPrivateKey, "TLS key"));
    ST_ASSIGN_OR_RETURN(pair.cert_chain, ReadPemFile(options.tls_cert, PemKind::kCertificate, "TLS certificate"));
    ssl.pem_key_cert_pairs.push_back(std::move(pair));
    if (!options.tls_ca.empty()) {
      ST_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(options.tls_ca, PemKind::kCertificate, "TLS CA"));
    }
    creds = grpc::SslServerCredentials(ssl);
  } else if (!options.tls_ca.empty()) {
    return absl::InvalidArgumentError("--tls-ca needs --tls-cert and --tls-key");
  } else {
    creds = grpc::InsecureServerCredentials();
  }
  const auto listen_failure = [&options](int error, const std::string& why) {
    if (error == EADDRINUSE) {
      return absl::AlreadyExistsError(absl::StrCat(
          "address in use: another process listens on '", options.listen,
          "' (another worker?); stop it or choose another port"));
    }
    return absl::UnavailableError(absl::StrCat("cannot listen on '", options.listen, "'",
                                               why.empty() ? "" : ": ", why));
  };
  if (std::string why; const int error = ListenError(options.listen, &why)) {
    return listen_failure(error, why);
  }
  std::unique_ptr<WorkerServer> w(new WorkerServer());
  w->listen_ = options.listen;
  ST_ASSIGN_OR_RETURN(w->file_, GgufFile::Open(options.model_path));
  ST_ASSIGN_OR_RETURN(w->config_, LoadModelConfig(*w->file_));
  w->pool_ = std::make_unique<ThreadPool>(options.threads, options.cpus);
  ST_ASSIGN_OR_RETURN(std::unique_ptr<MappedExpertStore> store,
                      MappedExpertStore::Create(*w->file_, w->config_, options.memory_budget));
  w->store_ = std::move(store);
  w->info_.fingerprint = GgufFingerprint(*w->file_);
  w->info_.content_sample = GgufContentSample(*w->file_);
  w->info_.token = options.token;
  w->info_.isa = DispatchedIsa();
  w->info_.threads = w->pool_->num_threads();
  // On a short-lived thread bound as the Compute thread will be (with
  // --cpus: to cpus[0]), so the speed is the one steps get; binding this
  // thread would bind every thread it creates later (gRPC's).
  std::thread([&w] {
    w->pool_->BindCaller();
    w->info_.expert_tokens_per_second = MeasureSpeed(*w->store_, w->config_, w->pool_.get());
  }).join();
  w->service_ = std::make_unique<ExpertServiceImpl>(w->config_, w->store_.get(), w->pool_.get(),
                                                    w->info_);


  // Our grpc.health.v1, not gRPC's callback-API one (proto/health_service.h).
  grpc::EnableDefaultHealthCheckService(false);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  RouteProtobufLogs();  // refused messages log at a bounded rate
  ST_RETURN_IF_ERROR(path_taken());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, creds, &w->port_);
  builder.RegisterService(w->service_.get());
  w->health_ = std::make_unique<HealthService>();
  w->health_->SetServing(smallthinker::v1::ExpertService::service_full_name(), true);
  builder.RegisterService(w->health_.get());
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  // gRPC sets SO_REUSEPORT by default: a second worker on a port in use
  // would start and silently take a share of the connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::unique_ptr<grpc::ServerCompletionQueue> compute_cq = builder.AddCompletionQueue();
  w->server_ = builder.BuildAndStart();
  if (w->server_ == nullptr || w->port_ == 0) {
    std::string why;
    const int error = ListenError(options.listen, &why);
    if (why.empty() && !options.tls_cert.empty()) why = kTlsListenHint;
    return listen_failure(error, why);
  }
  w->compute_ = std::make_unique<ComputeStreams>(w->service_.get(), std::move(compute_cq));
  w->compute_->Start();
  LOG(INFO) << "worker serving " << options.model_path << " on port " << w->port_
            << (options.tls_cert.empty() ? "" : (options.tls_ca.empty() ? " (TLS)" : " (mTLS)"))
            << ", fingerprint 0x" << std::hex << w->info_.fingerprint << std::dec
            << ", isa " << w->info_.isa << ", " << static_cast<int64_t>(w->info_.expert_tokens_per_second)
            << " expert-tokens/s";
  return w;
}

WorkerServer::~WorkerServer() { Shutdown(); }

void WorkerServer::Wait() { shut_down_.WaitForNotification(); }

void WorkerServer::Shutdown() {
  absl::MutexLock lock(&shutdown_mu_);
  if (shut_down_.HasBeenNotified()) return;
  if (health_) health_->Shutdown();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  if (compute_) compute_->Shutdown();
  shut_down_.Notify();
}

}  // namespace st
