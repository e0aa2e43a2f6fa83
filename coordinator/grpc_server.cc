#include "coordinator/grpc_server.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/host_port.h"
#include "common/pem_file.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/server_builder.h"
#include "proto/protobuf_log.h"

namespace st::serve {

void GrpcServer::SetServing(bool serving) {
  health->SetServing("", serving);
  health->SetServing(smallthinker::v1::InferenceService::service_full_name(), serving);
}

void GrpcServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  if (health) health->Shutdown();
  if (server) server->Shutdown(std::chrono::system_clock::now() + grace);
}

GrpcServer::~GrpcServer() { Shutdown(std::chrono::seconds(2)); }

absl::StatusOr<std::unique_ptr<GrpcServer>> StartGrpcServer(ServeState& state,
                                                           const GrpcOptions& options) {
  // Our grpc.health.v1, not gRPC's callback-API one (proto/health_service.h).
  grpc::EnableDefaultHealthCheckService(false);
  RouteProtobufLogs();  // refused messages log at a bounded rate
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both --tls-cert and --tls-key");
  }
  if (!options.tls_cert_file.empty()) {
    auto cert = ReadPemFile(options.tls_cert_file, PemKind::kCertificate, "TLS certificate");
    if (!cert.ok()) return cert.status();
    auto key = ReadPemFile(options.tls_key_file, PemKind::kPrivateKey, "TLS key");
    if (!key.ok()) return key.status();
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(ssl);
  } else {
    creds = grpc::InsecureServerCredentials();
  }
  auto g = std::make_unique<GrpcServer>();
  g->service = std::make_unique<InferenceServiceImpl>(state);
  grpc::ServerBuilder builder;
  if (options.max_threads > 0) {
    grpc::ResourceQuota quota("smallthinker-serve");
    quota.SetMaxThreads(options.max_threads);
    builder.SetResourceQuota(quota);
  }
  builder.AddListeningPort(options.listen, creds, &g->port);
  // gRPC sets SO_REUSEPORT by default: a second server would share the port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(g->service.get());
  g->health = std::make_unique<HealthService>();
  // NOT_SERVING until the model is loaded, from the first call on (set
  // after the start, a probe in between read SERVING).
  g->SetServing(false);
  builder.RegisterService(g->health.get());
  g->server = builder.BuildAndStart();
  if (g->server == nullptr || g->port == 0) {
    std::string why;
    ListenError(options.listen, &why);
    if (why.empty() && !options.tls_cert_file.empty()) why = kTlsListenHint;
    return absl::UnavailableError(
        absl::StrCat("gRPC: cannot listen on ", options.listen, why.empty() ? "" : ": ", why));
  }
  return g;
}

}  // namespace st::serve
