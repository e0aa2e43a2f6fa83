// The coordinator's connection to one expert worker: channel (plaintext or
// TLS), pairing (Describe + fingerprint and shape check), Assign, and one
// long-lived Compute stream.
//
// The stream uses gRPC's asynchronous API on a completion queue of its own,
// driven by the thread that calls Submit/Await (the forward pass): Submit
// starts the write and the read of the reply and returns at once, Await
// polls the queue until the reply is in or the deadline passes. No other
// thread sits between the socket and the forward pass, so a reply costs no
// thread wake-ups on the coordinator (a reader thread handing replies over
// through a condition variable cost ~40 us per step, a blocking Write
// ~90 us on a busy machine). Poll() lets the caller keep a large request
// flowing while it computes its own share.
//
// Thread-compatible: one thread at a time (the executor hands a worker's
// client between the forward pass and its supervisor under its own mutex).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "expert_worker/expert_store.h"
#include "grpcpp/grpcpp.h"
#include "model/config.h"
#include "smallthinker/v1/expert.grpc.pb.h"
#include "smallthinker/v1/expert.pb.h"

namespace st {

using Clock = std::chrono::steady_clock;

class WorkerClient {
 public:
  WorkerClient(std::string address, const smallthinker::v1::ClusterConfig& config);
  ~WorkerClient();

  const std::string& address() const { return address_; }
  const smallthinker::v1::DescribeResponse& description() const { return description_; }

  // Creates the channel if needed and calls Describe (with the call
  // deadline); FAILED_PRECONDITION if the worker serves another model
  // (fingerprint or shape differ), UNAUTHENTICATED on a token mismatch,
  // UNAVAILABLE if unreachable (or TLS does not match). Messages name the
  // worker's address.
  absl::Status Pair(uint64_t fingerprint, const ModelConfig& config);
  absl::Status Assign(const std::vector<ExpertKey>& experts);
  // Opens the Compute stream on a new completion queue (closing an old one).
  absl::Status OpenStream();
  // Cancels the stream and waits for its operations to end.
  void CloseStream();

  // Fire-and-forget Prefetch hint (async, with the call deadline).
  void Prefetch(const std::vector<ExpertKey>& experts);

  // Starts sending one step and reading its reply; returns without waiting.
  // At most one step in flight; the reply of the previous one must have been
  // awaited.
  void Submit(smallthinker::v1::ComputeRequest request);
  // Handles whatever completions are ready, without blocking (keeps a large
  // write flowing and timestamps an early reply).
  void Poll();
  // Waits for the reply of the submitted step until `deadline`.
  // DEADLINE_EXCEEDED on timeout (the stream is then cancelled), UNAVAILABLE
  // if the stream broke. The reply stays valid until the next Submit.
  absl::StatusOr<const smallthinker::v1::ComputeResponse*> Await(Clock::time_point deadline);
  // When the reply returned by the last successful Await was taken off the
  // completion queue (by Await or Poll).
  Clock::time_point reply_time() const { return reply_time_; }

 private:
  enum Tag : intptr_t { kStartTag = 1, kWriteTag, kReadTag, kFinishTag };
  // Waits for one completion until `deadline` (gpr monotonic) and handles
  // it; false if none came.
  bool PollOnce(gpr_timespec deadline);
  void Handle(void* tag, bool ok);
  std::unique_ptr<grpc::ClientContext> NewContext(bool with_deadline) const;

  const std::string address_;
  const smallthinker::v1::ClusterConfig& config_;
  uint64_t fingerprint_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<smallthinker::v1::ExpertService::Stub> stub_;
  smallthinker::v1::DescribeResponse description_;
  std::atomic<int> prefetches_in_flight_{0};

  // The stream and its completion queue (created by OpenStream).
  std::unique_ptr<grpc::CompletionQueue> cq_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<smallthinker::v1::ComputeRequest,
                                                smallthinker::v1::ComputeResponse>>
      stream_;
  bool start_pending_ = false, write_pending_ = false, read_pending_ = false;
  bool finish_pending_ = false;
  bool has_reply_ = false;
  bool broken_ = false;  // an operation failed or the stream was cancelled
  grpc::Status finish_status_;
  smallthinker::v1::ComputeRequest request_;  // alive until its write completes
  smallthinker::v1::ComputeResponse reply_;   // read target; returned by Await
  Clock::time_point reply_time_;
};

// Channel credentials for the cluster config (TLS if tls_ca is set).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> WorkerCredentials(
    const smallthinker::v1::ClusterConfig& config);

}  // namespace st
