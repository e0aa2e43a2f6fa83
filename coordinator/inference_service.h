// The gRPC InferenceService (proto/smallthinker/v1/inference.proto) over the
// continuous-batching Engine. Calls before the model has loaded get
// UNAVAILABLE; calls without the API key (when one is set) UNAUTHENTICATED.
#pragma once

#include "coordinator/serve_state.h"
#include "smallthinker/v1/inference.grpc.pb.h"

namespace st::serve {

// absl::Status -> grpc::Status with the same code and message.
grpc::Status ToGrpc(const absl::Status& status);

class InferenceServiceImpl final : public smallthinker::v1::InferenceService::Service {
 public:
  explicit InferenceServiceImpl(ServeState& state) : state_(state) {}

  grpc::Status Generate(grpc::ServerContext* context,
                        const smallthinker::v1::GenerateRequest* request,
                        grpc::ServerWriter<smallthinker::v1::GenerateResponse>* writer) override;
  grpc::Status Chat(grpc::ServerContext* context, const smallthinker::v1::ChatRequest* request,
                    grpc::ServerWriter<smallthinker::v1::GenerateResponse>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext* context,
                        const smallthinker::v1::TokenizeRequest* request,
                        smallthinker::v1::TokenizeResponse* response) override;
  grpc::Status Detokenize(grpc::ServerContext* context,
                          const smallthinker::v1::DetokenizeRequest* request,
                          smallthinker::v1::DetokenizeResponse* response) override;
  grpc::Status GetModelInfo(grpc::ServerContext* context,
                            const smallthinker::v1::GetModelInfoRequest* request,
                            smallthinker::v1::ModelInfo* response) override;
  grpc::Status GetStats(grpc::ServerContext* context,
                        const smallthinker::v1::GetStatsRequest* request,
                        smallthinker::v1::Stats* response) override;

 private:
  // The engine if the call may proceed (authorized, model loaded).
  absl::StatusOr<Engine*> Admit(grpc::ServerContext* context) const;
  // Submits and streams one generation until it ends or the call is cancelled.
  grpc::Status Stream(grpc::ServerContext* context, Engine* engine, std::vector<int32_t> prompt,
                      const smallthinker::v1::GenerateOptions& options,
                      grpc::ServerWriter<smallthinker::v1::GenerateResponse>* writer);

  ServeState& state_;
};

}  // namespace st::serve
