#include "expert_worker/compute_streams.h"

#include "glog/logging.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/async_stream.h"

namespace st {

namespace v1 = smallthinker::v1;

// One Compute call: a small state machine driven by its completion-queue
// tags (the Call itself is the tag; `state_` says which operation ended).
class ComputeStreams::Call {
 public:
  Call(ExpertServiceImpl* service, grpc::ServerCompletionQueue* cq)
      : service_(service), cq_(cq), stream_(&ctx_) {
    service_->RequestCompute(&ctx_, &stream_, cq_, cq_, this);
  }

  // Advances the call after the operation it waited for ended (`ok` as
  // gRPC reports it). Returns false once the call is done and may be
  // deleted.
  bool Proceed(bool ok) {
    switch (state_) {
      case State::kAccepting:
        if (!ok) return false;  // server shutting down
        new Call(service_, cq_);  // keep accepting streams
        if (grpc::Status s = service_->CheckComputeCall(&ctx_); !s.ok()) return Finish(s);
        LOG(INFO) << "compute stream opened by " << ctx_.peer();
        return Read();
      case State::kReading: {
        if (!ok) {  // the coordinator closed its side
          LOG(INFO) << "compute stream closed by " << ctx_.peer();
          return Finish(grpc::Status::OK);
        }
        if (!grpc::SerializationTraits<v1::ComputeRequest>::Deserialize(&in_, &req_).ok()) {
          LOG(WARNING) << "malformed Compute from " << ctx_.peer() << ": not a ComputeRequest";
          return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                     "Compute message is not a ComputeRequest (unparseable bytes)"));
        }
        if (!first_ && req_.step_id() <= last_step_) {
          return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                     absl::StrCat("step_id ", req_.step_id(), " not after ",
                                                  last_step_)));
        }
        resp_.Clear();
        if (absl::Status s = service_->Run(req_, &resp_); !s.ok()) {
          LOG(WARNING) << "malformed Compute from " << ctx_.peer() << ": " << s.message();
          return Finish(ToGrpc(s));
        }
        first_ = false;
        last_step_ = req_.step_id();
        bool own_buffer = false;
        out_.Clear();  // the previous reply's, written by now
        if (grpc::Status s = grpc::SerializationTraits<v1::ComputeResponse>::Serialize(resp_, &out_, &own_buffer);
            !s.ok()) {
          return Finish(s);
        }
        state_ = State::kWriting;
        stream_.Write(out_, this);
        return true;
      }
      case State::kWriting:
        if (!ok) {  // the stream broke
          LOG(INFO) << "compute stream closed by " << ctx_.peer();
          return Finish(grpc::Status::OK);
        }
        return Read();
      case State::kFinishing:
        return false;
    }
    return false;
  }

 private:
  enum class State { kAccepting, kReading, kWriting, kFinishing };

  bool Read() {
    state_ = State::kReading;
    stream_.Read(&in_, this);
    return true;
  }
  bool Finish(const grpc::Status& status) {
    state_ = State::kFinishing;
    stream_.Finish(status, this);
    return true;
  }

  ExpertServiceImpl* service_;
  grpc::ServerCompletionQueue* cq_;
  grpc::ServerContext ctx_;
  grpc::ServerAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer> stream_;
  State state_ = State::kAccepting;
  grpc::ByteBuffer in_, out_;  // the raw messages (see ExpertServiceImpl)
  v1::ComputeRequest req_;
  v1::ComputeResponse resp_;
  uint64_t last_step_ = 0;
  bool first_ = true;
};

ComputeStreams::ComputeStreams(ExpertServiceImpl* service,
                               std::unique_ptr<grpc::ServerCompletionQueue> cq)
    : service_(service), cq_(std::move(cq)) {}

ComputeStreams::~ComputeStreams() { Shutdown(); }

void ComputeStreams::Start() {
  new Call(service_, cq_.get());
  thread_ = std::thread([this] { Serve(); });
}

void ComputeStreams::Serve() {
  void* tag = nullptr;
  bool ok = false;
  while (cq_->Next(&tag, &ok)) {
    auto* call = static_cast<Call*>(tag);
    bool keep;
    {
      std::lock_guard<std::mutex> lock(mu_);
      keep = !stopping_ && call->Proceed(ok);
    }
    if (!keep) delete call;  // its one operation has ended: nothing pending
  }
}

void ComputeStreams::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cq_->Shutdown();
  }
  if (thread_.joinable()) {
    thread_.join();
  } else {  // never started: drain what is queued
    void* tag = nullptr;
    bool ok = false;
    while (cq_->Next(&tag, &ok)) delete static_cast<Call*>(tag);
  }
}

}  // namespace st
