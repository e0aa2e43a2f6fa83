#include "coordinator/worker_client.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "expert_worker/expert_service.h"
#include "glog/logging.h"
#include "kernels/dtype.h"

namespace st {

namespace v1 = smallthinker::v1;

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", what, " '", path, "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Hex(uint64_t v) { return absl::StrCat("0x", absl::Hex(v, absl::kZeroPad16)); }

int CallTimeoutMs(const v1::ClusterConfig& c) {
  return c.call_timeout_ms() > 0 ? c.call_timeout_ms() : 3000;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> WorkerCredentials(
    const v1::ClusterConfig& config) {
  if (config.tls_ca().empty()) {
    if (!config.tls_cert().empty() || !config.tls_key().empty()) {
      return absl::InvalidArgumentError("worker TLS client certificate needs a CA (tls_ca)");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  auto ca = ReadFile(config.tls_ca(), "worker TLS CA");
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *ca;
  if (!config.tls_cert().empty() || !config.tls_key().empty()) {
    auto cert = ReadFile(config.tls_cert(), "worker TLS client certificate");
    if (!cert.ok()) return cert.status();
    auto key = ReadFile(config.tls_key(), "worker TLS client key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::SslCredentials(ssl);
}

WorkerClient::WorkerClient(std::string address, const v1::ClusterConfig& config)
    : address_(std::move(address)), config_(config) {}

WorkerClient::~WorkerClient() {
  CloseStream();
  // Prefetch callbacks refer to this object; they end by their deadline.
  while (prefetches_in_flight_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

std::unique_ptr<grpc::ClientContext> WorkerClient::NewContext(bool with_deadline) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!config_.token().empty()) ctx->AddMetadata(kTokenMetadataKey, config_.token());
  ctx->AddMetadata(kFingerprintMetadataKey, absl::StrCat(fingerprint_));
  if (with_deadline) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(CallTimeoutMs(config_)));
  }
  return ctx;
}

absl::Status WorkerClient::Pair(uint64_t fingerprint, const ModelConfig& config) {
  fingerprint_ = fingerprint;
  if (channel_ == nullptr) {
    auto creds = WorkerCredentials(config_);
    if (!creds.ok()) return creds.status();
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kMaxMessageBytes);
    args.SetMaxSendMessageSize(kMaxMessageBytes);
    // Reconnect quickly after a worker restarts.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    if (!config_.tls_server_name().empty()) {
      args.SetSslTargetNameOverride(config_.tls_server_name());
    }
    channel_ = grpc::CreateCustomChannel(address_, *creds, args);
    stub_ = v1::ExpertService::NewStub(channel_);
  }
  auto ctx = NewContext(/*with_deadline=*/true);
  v1::DescribeResponse d;
  grpc::Status s = stub_->Describe(ctx.get(), v1::DescribeRequest(), &d);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat("worker ", address_, ": ", s.error_message()));
  }
  if (d.fingerprint() != fingerprint) {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker ", address_, " serves another model: its fingerprint is ", Hex(d.fingerprint()),
        ", the coordinator's is ", Hex(fingerprint), "; start it with the same GGUF"));
  }
  if (d.n_layers() != config.n_layers || d.n_experts() != config.n_experts ||
      d.d_model() != config.d_model || d.d_expert() != config.d_expert) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", address_, " reports a different model shape"));
  }
  description_ = d;
  return absl::OkStatus();
}

absl::Status WorkerClient::Assign(const std::vector<ExpertKey>& experts) {
  v1::AssignRequest req;
  req.set_fingerprint(fingerprint_);
  for (const ExpertKey& k : experts) {
    v1::ExpertRef* r = req.add_experts();
    r->set_layer(k.layer);
    r->set_expert(k.expert);
  }
  auto ctx = NewContext(/*with_deadline=*/true);
  v1::AssignResponse resp;
  grpc::Status s = stub_->Assign(ctx.get(), req, &resp);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat("worker ", address_, ": Assign: ", s.error_message()));
  }
  return absl::OkStatus();
}

void WorkerClient::Prefetch(const std::vector<ExpertKey>& experts) {
  struct Call {
    std::unique_ptr<grpc::ClientContext> ctx;
    v1::PrefetchRequest req;
    v1::PrefetchResponse resp;
  };
  auto* call = new Call{NewContext(/*with_deadline=*/true), {}, {}};
  ++prefetches_in_flight_;
  for (const ExpertKey& k : experts) {
    v1::ExpertRef* r = call->req.add_experts();
    r->set_layer(k.layer);
    r->set_expert(k.expert);
  }
  stub_->async()->Prefetch(call->ctx.get(), &call->req, &call->resp,
                           [this, call](grpc::Status) {
                             delete call;
                             --prefetches_in_flight_;
                           });
}

absl::Status WorkerClient::OpenStream() {
  CloseStream();
  context_ = NewContext(/*with_deadline=*/false);
  stream_ = stub_->Compute(context_.get());
  if (stream_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("worker ", address_, ": no stream"));
  }
  {
    absl::MutexLock lock(&mu_);
    has_request_ = has_response_ = stop_ = false;
    stream_status_ = absl::OkStatus();
  }
  reader_ = std::thread([this] { ReadLoop(); });
  writer_ = std::thread([this] { WriteLoop(); });
  return absl::OkStatus();
}

void WorkerClient::CloseStream() {
  if (!reader_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  context_->TryCancel();
  reader_.join();
  writer_.join();
  const grpc::Status s = stream_->Finish();
  VLOG(1) << "worker " << address_ << ": stream finished: " << s.error_message();
  stream_.reset();
  context_.reset();
}

void WorkerClient::ReadLoop() {
  while (stream_->Read(&read_)) {
    const Clock::time_point now = Clock::now();
    absl::MutexLock lock(&mu_);
    response_.Swap(&read_);
    response_time_ = now;
    has_response_ = true;
  }
  // Finish() runs in CloseStream, once no thread can write any more.
  absl::MutexLock lock(&mu_);
  stream_status_ = absl::UnavailableError(absl::StrCat("worker ", address_, ": stream broken"));
}

void WorkerClient::WriteLoop() {
  v1::ComputeRequest req;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](WorkerClient* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) {
            return c->has_request_ || c->stop_ || !c->stream_status_.ok();
          },
          this));
      if (!has_request_) return;
      req.Swap(&request_);
      has_request_ = false;
    }
    // A failed write means the call is over; the reader reports why.
    if (!stream_->Write(req)) return;
  }
}

void WorkerClient::Submit(v1::ComputeRequest request) {
  {
    absl::MutexLock lock(&mu_);
    has_response_ = false;
    if (request.ByteSizeLong() > kInlineWriteBytes) {
      request_ = std::move(request);
      has_request_ = true;
      return;
    }
  }
  stream_->Write(request);  // a failure surfaces through the reader (Await)
}

absl::StatusOr<const v1::ComputeResponse*> WorkerClient::Await(Clock::time_point deadline) {
  {
    absl::MutexLock lock(&mu_);
    const absl::Time abs_deadline =
        absl::Now() + absl::FromChrono(deadline - Clock::now());
    mu_.AwaitWithDeadline(
        absl::Condition(
            +[](WorkerClient* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) {
              return c->has_response_ || !c->stream_status_.ok();
            },
            this),
        abs_deadline);
    if (has_response_) {
      has_response_ = false;
      reply_.Swap(&response_);
      reply_time_ = response_time_;
      return &reply_;
    }
    if (!stream_status_.ok()) return stream_status_;
  }
  // Timed out: cancel the stream so its thread stops.
  if (context_) context_->TryCancel();
  return absl::DeadlineExceededError(
      absl::StrCat("worker ", address_, ": no reply within the step timeout"));
}

}  // namespace st
