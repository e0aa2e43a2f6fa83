// The worker's Compute streams on gRPC's asynchronous API, served by one
// thread of our own. That thread waits on the completion queue, so it is
// the one that reads the socket, runs the step and writes the reply: a
// request reaches the kernels without the thread hand-offs of the
// synchronous API (there, a polling thread read the socket and woke the
// handler blocked in Read: about three context switches and seven system
// calls per step on the worker, against one and three on the coordinator).
// Streams are served one message at a time, each call in the order
// accept -> check token and fingerprint -> (Read -> Validate -> Run ->
// Write)* -> Finish; several streams may be open at once (a coordinator
// that reconnects, or a second coordinator).
#pragma once

#include <memory>
#include <mutex>
#include <thread>

#include "expert_worker/expert_service.h"
#include "grpcpp/completion_queue.h"

namespace st {

class ComputeStreams {
 public:
  // `service` must outlive this object and be registered with the server
  // that owns `cq` (from ServerBuilder::AddCompletionQueue).
  ComputeStreams(ExpertServiceImpl* service, std::unique_ptr<grpc::ServerCompletionQueue> cq);
  ~ComputeStreams();  // Shutdown()

  // Starts the serving thread; call once the server is started.
  void Start();
  // Call after the server's Shutdown: drains the queue and joins the thread.
  void Shutdown();

 private:
  class Call;
  void Serve();

  ExpertServiceImpl* service_;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::thread thread_;
  bool shut_down_ = false;
  // Held while a call advances (it may start an operation on cq_) and while
  // Shutdown marks `stopping_` and shuts cq_ down: gRPC aborts the process
  // (grpc_cq_begin_op) when an operation starts on a shut-down queue, which
  // a call ending as the worker stopped did about 1 time in 5 under load.
  std::mutex mu_;
  bool stopping_ = false;  // calls that end now are deleted, never advanced
};

}  // namespace st
