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
// Several clients may share one completion queue (given at construction):
// AwaitAll then waits for all of their replies at once, each timestamped
// when it came in. All calls that poll a shared queue (Submit, Poll, Await,
// AwaitAll, CloseStream) must come from one thread, since any of them may
// handle another client's completions.
//
// Thread-compatible: one thread at a time (the executor hands a worker's
// client between the forward pass and its supervisor under its own mutex),
// except CancelCalls.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
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

class WorkerClient {
 public:
  // `shared_cq` (may be null: the stream gets a queue of its own) must
  // outlive the client and be drained by its owner after every client's
  // stream is closed.
  WorkerClient(std::string address, const smallthinker::v1::ClusterConfig& config,
               grpc::CompletionQueue* shared_cq = nullptr);
  ~WorkerClient();

  const std::string& address() const { return address_; }
  const smallthinker::v1::DescribeResponse& description() const { return description_; }

  // Creates the channel if needed and calls Describe (with the call
  // deadline); FAILED_PRECONDITION if the worker serves another model
  // (fingerprint or shape differ), UNAUTHENTICATED on a token mismatch,
  // UNAVAILABLE if unreachable (or TLS does not match). Messages name the
  // worker's address.
  // content_sample: GgufContentSample of the coordinator's model (0 = not
  // checked); a worker that sends a different one is FAILED_PRECONDITION.
  absl::Status Pair(uint64_t fingerprint, const ModelConfig& config, uint64_t content_sample = 0);
  absl::Status Assign(const std::vector<ExpertKey>& experts);
  // One more Describe (with the call deadline) on the channel Pair made,
  // timed on a steady clock: how long the worker takes to answer a call,
  // without the connection set-up Pair's call may include. Errors as Pair's.
  absl::StatusOr<std::chrono::microseconds> RoundTrip();
  // Opens the Compute stream (on the shared completion queue, or a new one
  // of its own), closing an old one first.
  absl::Status OpenStream();
  // Cancels the stream and waits for its operations to end. No-op without
  // a stream.
  void CloseStream();
  bool has_stream() const { return stream_ != nullptr; }

  // Fire-and-forget Prefetch hint (async, with the call deadline).
  void Prefetch(const std::vector<ExpertKey>& experts);

  // Cancels the Describe or Assign in flight, and makes every later one
  // fail at once with CANCELLED: the owner is shutting down, and a stopped
  // worker would otherwise hold it for the call's whole deadline (3 s, or
  // 60 s for an Assign). Thread-safe: called from another thread than the
  // one in the call.
  void CancelCalls();
  // Cancels the Describe or Assign in flight, and makes every later Assign
  // fail at once with CANCELLED until the next Pair: the worker was marked
  // down, and a stalled one would hold the caller (the worker's supervisor
  // thread on the coordinator, and with it the worker's re-admission) for
  // up to the Assign's 60 s. Thread-safe, like CancelCalls.
  void Interrupt();

  // Starts sending one step and reading its reply; returns without waiting.
  // At most one step in flight; the reply of the previous one must have been
  // awaited.
  void Submit(smallthinker::v1::ComputeRequest request);
  // Handles whatever completions are ready, without blocking (keeps a large
  // write flowing and timestamps an early reply).
  void Poll();
  // Waits for the reply of the submitted step until `deadline`.
  // DEADLINE_EXCEEDED on timeout (the stream is then cancelled), UNAVAILABLE
  // if the stream broke (its message ends with the worker's status, when
  // the worker ended the call with one). The reply stays valid until the next Submit.
  absl::StatusOr<const smallthinker::v1::ComputeResponse*> Await(Clock::time_point deadline);
  // Waits until every client in `clients` (all on the same shared queue)
  // has its reply, has failed, or `deadline` passed, handling completions in
  // the order they come (so each reply_time() is when its own reply was
  // read, not when the others were). Await on each then returns at once.
  // Clients without a shared queue are awaited one after another.
  // For the first `spin` the queue is polled without blocking (a reply that
  // comes then costs no thread wake-up: on a virtual machine an idle vCPU's
  // wake-up alone is tens of microseconds), then waited on.
  static void AwaitAll(const std::vector<WorkerClient*>& clients, Clock::time_point deadline,
                       Clock::duration spin = Clock::duration::zero());
  // When the reply returned by the last successful Await was taken off the
  // completion queue (by Await or Poll).
  Clock::time_point reply_time() const { return reply_time_; }

 private:
  enum Tag : int { kStartTag = 0, kWriteTag, kReadTag, kFinishTag, kNumTags };
  // The completion queue tag of one operation: which client, which op.
  struct Op {
    WorkerClient* client;
    Tag tag;
  };
  void* TagOf(Tag t) { return &ops_[t]; }
  grpc::CompletionQueue* cq() const { return shared_cq_ != nullptr ? shared_cq_ : cq_.get(); }
  // Waits for one completion on `cq` until `deadline` (gpr monotonic) and
  // hands it to its client; false if none came (or the queue shut down).
  static bool PollOnce(grpc::CompletionQueue* cq, gpr_timespec deadline);
  bool PollOnce(gpr_timespec deadline) { return PollOnce(cq(), deadline); }
  // Whether the submitted step's reply is still to come.
  bool AwaitingReply() const {
    return stream_ != nullptr && read_pending_ && !broken_ && !has_reply_;
  }
  void Handle(Tag tag, bool ok);
  // Polls until the submitted step's reply is in, the stream broke or
  // `deadline` passed (Await without taking the reply).
  void WaitReply(Clock::time_point deadline);
  std::unique_ptr<grpc::ClientContext> NewContext(bool with_deadline) const;
  // A Describe call with the call deadline, cancellable like every call
  // (Pair's and RoundTrip's).
  grpc::Status Describe(smallthinker::v1::DescribeResponse* d);
  // Makes `ctx` (a Describe's or an Assign's) cancellable by CancelCalls and
  // Interrupt for the object's lifetime.
  class CancellableCall {
   public:
    CancellableCall(WorkerClient* client, grpc::ClientContext* ctx);
    ~CancellableCall();
    CancellableCall(const CancellableCall&) = delete;
    CancellableCall& operator=(const CancellableCall&) = delete;

   private:
    WorkerClient* client_;
    grpc::ClientContext* ctx_;
  };
  // Why a broken stream broke, as ": CODE: message" (the worker's status,
  // from Finish), or "" if unknown (cancelled by us, or no status within
  // 1 s). Finishes the stream.
  std::string BrokenCause();

  const std::string address_;
  const smallthinker::v1::ClusterConfig& config_;
  uint64_t fingerprint_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<smallthinker::v1::ExpertService::Stub> stub_;
  smallthinker::v1::DescribeResponse description_;
  std::atomic<int> prefetches_in_flight_{0};
  absl::Mutex calls_mu_;
  grpc::ClientContext* call_ ABSL_GUARDED_BY(calls_mu_) = nullptr;  // Describe/Assign running
  bool calls_cancelled_ ABSL_GUARDED_BY(calls_mu_) = false;
  bool interrupted_ ABSL_GUARDED_BY(calls_mu_) = false;  // until the next Pair

  // The stream and its completion queue (created by OpenStream unless
  // shared).
  grpc::CompletionQueue* const shared_cq_;
  Op ops_[kNumTags];
  std::unique_ptr<grpc::CompletionQueue> cq_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<smallthinker::v1::ComputeRequest,
                                                smallthinker::v1::ComputeResponse>>
      stream_;
  bool start_pending_ = false, write_pending_ = false, read_pending_ = false;
  bool finish_pending_ = false;
  bool has_reply_ = false;
  bool broken_ = false;  // an operation failed or the stream was cancelled
  bool cancelled_ = false;  // ... by us (TryCancel)
  bool finished_ = false;   // Finish completed (finish_status_ is the call's)
  std::string broken_cause_;  // BrokenCause()
  grpc::Status finish_status_;
  smallthinker::v1::ComputeRequest request_;  // alive until its write completes
  smallthinker::v1::ComputeResponse reply_;   // read target; returned by Await
  Clock::time_point reply_time_;
};

// Channel credentials for the cluster config (TLS if tls_ca is set).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> WorkerCredentials(
    const smallthinker::v1::ClusterConfig& config);

}  // namespace st
