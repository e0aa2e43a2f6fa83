// A running expert worker: the model file, its expert store, the thread pool
// and the gRPC server (ExpertService + health + reflection) listening on one
// address, optionally with TLS / mutual TLS.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/thread_pool.h"
#include "expert_worker/compute_streams.h"
#include "expert_worker/expert_service.h"
#include "expert_worker/expert_store.h"
#include "model/config.h"
#include "model/gguf.h"
#include "proto/health_service.h"

namespace grpc {
class Server;
}

namespace st {

struct WorkerOptions {
  std::string model_path;
  // host:port (port 0 picks a free one), or unix:PATH / unix-abstract:NAME
  // (a Unix domain socket: a worker on the coordinator's host).
  std::string listen = "127.0.0.1:7070";
  uint64_t memory_budget = 0;             // bytes for held experts; 0 = all experts
  std::string token;                      // shared token; "" = none
  // PEM paths. cert + key = serve TLS; ca in addition = require and verify
  // client certificates (mutual TLS).
  std::string tls_cert, tls_key, tls_ca;
  int threads = 0;  // kernel threads; 0 = all cores (or one per entry of cpus)
  std::vector<int> cpus;  // pin them (ThreadPool); empty = not pinned
};

class WorkerServer {
 public:
  // Loads the model, measures expert speed, binds and starts serving.
  // Errors name the path or the address.
  static absl::StatusOr<std::unique_ptr<WorkerServer>> Start(const WorkerOptions& options);
  ~WorkerServer();

  int port() const { return port_; }  // meaningless for a Unix socket
  // The address a coordinator dials: host:port with the bound port, or the
  // Unix socket address as given.
  std::string address() const;
  uint64_t fingerprint() const { return info_.fingerprint; }
  const ExpertServiceInfo& info() const { return info_; }
  // Blocks until a Shutdown() has finished (called from another thread,
  // e.g. the one that waits for signals).
  void Wait();
  // Health NOT_SERVING, the server's Shutdown (1 s for open calls), then the
  // Compute thread drained and joined. A second call (the destructor) waits
  // for the first to finish.
  void Shutdown();

 private:
  WorkerServer() = default;
  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<ExpertStore> store_;
  ExpertServiceInfo info_;
  std::unique_ptr<ExpertServiceImpl> service_;
  std::unique_ptr<ComputeStreams> compute_;  // destroyed after server_
  std::unique_ptr<HealthService> health_;
  std::unique_ptr<grpc::Server> server_;
  std::string listen_;
  int port_ = 0;
  absl::Mutex shutdown_mu_;
  absl::Notification shut_down_;
};

// Whether a gRPC address names a Unix domain socket (unix:PATH,
// unix:///PATH, unix-abstract:NAME) rather than host:port.
bool IsUnixSocketAddress(const std::string& address);

// Name of the best SIMD target the kernels dispatch to on this CPU.
std::string DispatchedIsa();

}  // namespace st
