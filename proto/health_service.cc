#include "proto/health_service.h"

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace st {

namespace hv1 = grpc::health::v1;

HealthService::HealthService() { serving_[""] = true; }

void HealthService::SetServing(const std::string& service, bool serving) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  serving_[service] = serving;
  changed_.SignalAll();
}

void HealthService::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  for (auto& [name, serving] : serving_) serving = false;
  changed_.SignalAll();
}

HealthService::Status HealthService::StatusOf(const std::string& service) const {
  auto it = serving_.find(service);
  if (it == serving_.end()) return hv1::HealthCheckResponse::SERVICE_UNKNOWN;
  return it->second ? hv1::HealthCheckResponse::SERVING : hv1::HealthCheckResponse::NOT_SERVING;
}

grpc::Status HealthService::Check(grpc::ServerContext*, const hv1::HealthCheckRequest* req,
                                  hv1::HealthCheckResponse* resp) {
  absl::MutexLock lock(&mu_);
  const Status status = StatusOf(req->service());
  if (status == hv1::HealthCheckResponse::SERVICE_UNKNOWN) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "unknown service '" + req->service() + "'");
  }
  resp->set_status(status);
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(grpc::ServerContext* ctx, const hv1::HealthCheckRequest* req,
                                  grpc::ServerWriter<hv1::HealthCheckResponse>* writer) {
  absl::MutexLock lock(&mu_);
  if (watches_ >= kMaxWatches) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("too many health Watch streams open (limit ", kMaxWatches,
                                     "); poll with Check instead"));
  }
  ++watches_;
  const absl::Cleanup count = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { --watches_; };
  // StatusOf never answers UNKNOWN, so the first status is always written.
  Status sent = hv1::HealthCheckResponse::UNKNOWN;
  while (true) {
    const Status now = StatusOf(req->service());
    if (now != sent) {
      hv1::HealthCheckResponse resp;
      resp.set_status(now);
      mu_.Unlock();
      const bool written = writer->Write(resp);
      mu_.Lock();
      if (!written) return grpc::Status::OK;  // the caller went away
      sent = now;
      continue;  // the status may have moved while unlocked
    }
    if (shut_down_) return grpc::Status::OK;
    // Wake on a change, or every 100 ms to notice a cancelled caller.
    changed_.WaitWithTimeout(&mu_, absl::Milliseconds(100));
    if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  }
}

}  // namespace st
