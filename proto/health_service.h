// grpc.health.v1 on the synchronous API (proto/grpc/health/v1/health.proto
// says why it is not gRPC's built-in service). The server as a whole ("")
// starts SERVING; named services are added by SetServing. Thread-safe.
#pragma once

#include <map>
#include <string>

#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace st {

class HealthService final : public grpc::health::v1::Health::Service {
 public:
  HealthService();

  // Sets the status of `service` ("" = the server as a whole).
  void SetServing(const std::string& service, bool serving);
  // Everything NOT_SERVING and every Watch ends; call before the server's
  // Shutdown, which waits for open calls.
  void Shutdown();

  // Watch streams open at once; more are refused with RESOURCE_EXHAUSTED
  // (each holds a server thread for as long as it is open, and threads
  // are better kept for the service the server exists for).
  static constexpr int kMaxWatches = 32;

  grpc::Status Check(grpc::ServerContext* ctx, const grpc::health::v1::HealthCheckRequest* req,
                     grpc::health::v1::HealthCheckResponse* resp) override;
  grpc::Status Watch(grpc::ServerContext* ctx, const grpc::health::v1::HealthCheckRequest* req,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override;

 private:
  using Status = grpc::health::v1::HealthCheckResponse::ServingStatus;
  Status StatusOf(const std::string& service) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::CondVar changed_;
  std::map<std::string, bool> serving_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  int watches_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace st
