// The gRPC ExpertService of a worker (proto/smallthinker/v1/expert.proto):
// checks the shared token on every call and the model fingerprint on
// pairing, validates every incoming message, and runs the experts it was
// assigned with LocalExpertExecutor::ComputeExpert (the coordinator's own
// kernels, so the numbers match bit for bit).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/thread_pool.h"
#include "expert_worker/expert_store.h"
#include "model/config.h"
#include "model/expert_phases.h"
#include "smallthinker/v1/expert.grpc.pb.h"

namespace st {

// Limits of the contract (documented in expert.proto).
inline constexpr int kMaxMessageBytes = 64 << 20;
inline constexpr int kMaxComputeRows = 4096;
inline constexpr int kMaxComputeItems = 65536;
// Room a Compute message needs besides its float payload (step id, compute
// time, field tags and lengths): the coordinator splits its requests by it
// and the worker refuses a request whose reply would not fit with it.
inline constexpr int kReplyEnvelopeBytes = 64;
// Metadata keys.
inline constexpr char kTokenMetadataKey[] = "x-st-token";
inline constexpr char kFingerprintMetadataKey[] = "x-st-fingerprint";

struct ExpertServiceInfo {
  uint64_t fingerprint = 0;
  uint64_t content_sample = 0;  // GgufContentSample
  std::string token;  // "" = no token required
  std::string isa;
  double expert_tokens_per_second = 0;
  int threads = 0;
};

// Thread-safe: gRPC calls it from many threads; compute is serialized (one
// thread pool). Compute is on the asynchronous API, raw (ComputeStreams
// parses each message itself, so bytes that are no ComputeRequest get
// INVALID_ARGUMENT rather than end the stream as if the coordinator had
// closed it, and serves it through CheckComputeCall and Run); the unary
// methods are synchronous.
class ExpertServiceImpl final
    : public smallthinker::v1::ExpertService::WithRawMethod_Compute<
          smallthinker::v1::ExpertService::Service> {
 public:
  ExpertServiceImpl(const ModelConfig& config, ExpertStore* store, ThreadPool* pool,
                    ExpertServiceInfo info);

  grpc::Status Describe(grpc::ServerContext* ctx, const smallthinker::v1::DescribeRequest* req,
                        smallthinker::v1::DescribeResponse* resp) override;
  grpc::Status Assign(grpc::ServerContext* ctx, const smallthinker::v1::AssignRequest* req,
                      smallthinker::v1::AssignResponse* resp) override;
  grpc::Status Prefetch(grpc::ServerContext* ctx, const smallthinker::v1::PrefetchRequest* req,
                        smallthinker::v1::PrefetchResponse* resp) override;

  // Checks a new Compute call: the token, and the coordinator's model
  // fingerprint in metadata (FAILED_PRECONDITION naming both).
  grpc::Status CheckComputeCall(const grpc::ServerContext* ctx) const;
  // Checks a ComputeRequest against the model and the current assignment
  // (INVALID_ARGUMENT / FAILED_PRECONDITION with a message naming the field).
  absl::Status Validate(const smallthinker::v1::ComputeRequest& req) const;
  // Checks (Validate) and runs a request, one at a time; a request Validate
  // refuses gets its error and nothing is computed.
  absl::Status Run(const smallthinker::v1::ComputeRequest& req,
                   smallthinker::v1::ComputeResponse* resp);

 private:
  grpc::Status CheckToken(const grpc::ServerContext* ctx) const;
  grpc::Status CheckFingerprint(uint64_t fingerprint) const;

  const ModelConfig& config_;
  ExpertStore* store_;
  ThreadPool* pool_;
  const ExpertServiceInfo info_;
  const uint64_t instance_id_;  // DescribeResponse.instance_id

  // Lock order: assign_mu_, compute_mu_, mu_.
  absl::Mutex assign_mu_;  // one Assign at a time
  // One user of the store and the pool at a time: a step, or a turn of an
  // Assign's packing.
  absl::Mutex compute_mu_;
  std::atomic<int> steps_waiting_{0};  // steps waiting for compute_mu_
  mutable absl::Mutex mu_;
  std::vector<uint8_t> assigned_ ABSL_GUARDED_BY(mu_);  // [n_layers * n_experts]
  // Guarded by compute_mu_: scratch of Run.
  std::vector<float> gathered_, expert_out_, item_out_;
  std::vector<std::vector<int>> by_expert_;
  std::vector<int> used_;
  std::vector<ExpertMatrices> matrices_;  // [n_experts], this step's experts
  ExpertPhases phases_;
};

// grpc::Status from absl::Status (same code and message).
grpc::Status ToGrpc(const absl::Status& s);
absl::Status FromGrpc(const grpc::Status& s);

}  // namespace st
