// Starts the gRPC server of `smallthinker serve`: the InferenceService,
// grpc.health.v1 (NOT_SERVING until the model is loaded) and server
// reflection, on plaintext or TLS.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/inference_service.h"
#include "grpcpp/grpcpp.h"
#include "proto/health_service.h"

namespace st::serve {

struct GrpcOptions {
  std::string listen = "127.0.0.1:50051";  // host:port; port 0 = pick a free one
  std::string tls_cert_file, tls_key_file;  // both set = TLS
  // Cap on the server's threads (gRPC's synchronous handlers hold one per
  // open call: streaming generations and health Watch streams); calls past
  // it get RESOURCE_EXHAUSTED instead of a thread each. 0 = no cap.
  int max_threads = 0;
};

struct GrpcServer {
  std::unique_ptr<InferenceServiceImpl> service;
  std::unique_ptr<HealthService> health;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  // Flips grpc.health.v1 (overall and for smallthinker.v1.InferenceService).
  void SetServing(bool serving);
  // Health NOT_SERVING (its Watch streams end), then the server's Shutdown
  // with `grace` for open calls. Once; the destructor calls it (2 s) if
  // nobody did, so an open Watch cannot hold an exiting process.
  void Shutdown(std::chrono::milliseconds grace);
  ~GrpcServer();

 private:
  bool shut_down_ = false;
};

absl::StatusOr<std::unique_ptr<GrpcServer>> StartGrpcServer(ServeState& state,
                                                           const GrpcOptions& options);

}  // namespace st::serve
