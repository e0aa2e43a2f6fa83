// The coordinator's connection to one expert worker: channel (plaintext or
// TLS), pairing (Describe + fingerprint and shape check), Assign, and one
// long-lived Compute stream. A reader thread receives replies; small
// requests (decode steps) are written by the caller directly, large ones
// (prefill) by a writer thread, so the forward pass never blocks on the
// network past its deadline: Submit() sends a step, Await() waits for its
// reply up to a deadline.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "expert_worker/expert_store.h"
#include "grpcpp/grpcpp.h"
#include "model/config.h"
#include "smallthinker/v1/expert.grpc.pb.h"
#include "smallthinker/v1/expert.pb.h"

namespace st {

using Clock = std::chrono::steady_clock;

// Below gRPC's initial flow-control window, so a write never waits for the
// peer to read.
inline constexpr size_t kInlineWriteBytes = 32 << 10;

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
  // Opens the Compute stream and starts its thread (closing an old one).
  absl::Status OpenStream();
  // Cancels the stream (unblocks its thread) and joins the thread.
  void CloseStream();

  // Fire-and-forget Prefetch hint (async, with the call deadline).
  void Prefetch(const std::vector<ExpertKey>& experts);

  // Sends one step (requests up to kInlineWriteBytes on the calling thread,
  // which cannot block on flow control; larger ones through the writer
  // thread). At most one step in flight.
  void Submit(smallthinker::v1::ComputeRequest request);
  // Waits for the reply of the submitted step until `deadline`.
  // DEADLINE_EXCEEDED on timeout (the stream is then cancelled), the stream's
  // error if it broke. The reply stays valid until the next Submit.
  absl::StatusOr<const smallthinker::v1::ComputeResponse*> Await(Clock::time_point deadline);
  // When the reply returned by the last successful Await arrived (read by
  // the stream thread, so it does not include the caller's own work).
  Clock::time_point reply_time() const { return reply_time_; }

 private:
  void ReadLoop();
  void WriteLoop();
  std::unique_ptr<grpc::ClientContext> NewContext(bool with_deadline) const;

  const std::string address_;
  const smallthinker::v1::ClusterConfig& config_;
  uint64_t fingerprint_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<smallthinker::v1::ExpertService::Stub> stub_;
  smallthinker::v1::DescribeResponse description_;

  // The stream. context_ and stream_ are created by OpenStream and used by
  // the stream thread; TryCancel may be called from any thread.
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<smallthinker::v1::ComputeRequest,
                                           smallthinker::v1::ComputeResponse>>
      stream_;
  std::thread reader_, writer_;
  std::atomic<int> prefetches_in_flight_{0};

  absl::Mutex mu_;
  bool has_request_ ABSL_GUARDED_BY(mu_) = false;  // for the writer thread
  bool has_response_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status stream_status_ ABSL_GUARDED_BY(mu_);  // non-OK once broken
  smallthinker::v1::ComputeRequest request_ ABSL_GUARDED_BY(mu_);
  smallthinker::v1::ComputeResponse response_ ABSL_GUARDED_BY(mu_);
  Clock::time_point response_time_ ABSL_GUARDED_BY(mu_);
  smallthinker::v1::ComputeResponse read_;   // reader thread's buffer
  smallthinker::v1::ComputeResponse reply_;  // returned by Await (caller's thread)
  Clock::time_point reply_time_;             // its arrival (caller's thread)
};

// Channel credentials for the cluster config (TLS if tls_ca is set).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> WorkerCredentials(
    const smallthinker::v1::ClusterConfig& config);

}  // namespace st
