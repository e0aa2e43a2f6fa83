#include "coordinator/worker_client.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/pem_file.h"
#include "common/worker_token.h"
#include "expert_worker/expert_service.h"
#include "glog/logging.h"
#include "grpc/support/time.h"
#include "kernels/dtype.h"

namespace st {

namespace v1 = smallthinker::v1;

namespace {

std::string Hex(uint64_t v) { return absl::StrCat("0x", absl::Hex(v, absl::kZeroPad16)); }

// Least deadline of Assign (the worker prepares the experts before it
// answers).
constexpr int kAssignTimeoutMs = 60000;

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
  // Files named by the cluster config: a missing or wrong one is the
  // config's mistake (INVALID_ARGUMENT, so it is not taken for an
  // unreachable worker).
  auto ca = ReadPemFile(config.tls_ca(), PemKind::kCertificate, "worker TLS CA");
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *ca;
  if (!config.tls_cert().empty() || !config.tls_key().empty()) {
    auto cert = ReadPemFile(config.tls_cert(), PemKind::kCertificate, "worker TLS client certificate");
    if (!cert.ok()) return cert.status();
    auto key = ReadPemFile(config.tls_key(), PemKind::kPrivateKey, "worker TLS client key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::SslCredentials(ssl);
}

WorkerClient::WorkerClient(std::string address, const v1::ClusterConfig& config,
                           grpc::CompletionQueue* shared_cq)
    : address_(std::move(address)), config_(config), shared_cq_(shared_cq) {
  for (int t = 0; t < kNumTags; ++t) ops_[t] = {this, static_cast<Tag>(t)};
}

WorkerClient::~WorkerClient() {
  CloseStream();
  // Prefetch callbacks refer to this object; they end by their deadline.
  while (prefetches_in_flight_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

std::unique_ptr<grpc::ClientContext> WorkerClient::NewContext(bool with_deadline) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  // gRPC aborts on a metadata value outside printable ASCII; Pair refuses
  // such a token, so this only guards calls made without pairing.
  if (!config_.token().empty() && ValidateWorkerToken(config_.token(), "").ok()) {
    ctx->AddMetadata(kTokenMetadataKey, config_.token());
  }
  ctx->AddMetadata(kFingerprintMetadataKey, absl::StrCat(fingerprint_));
  if (with_deadline) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(CallTimeoutMs(config_)));
  }
  return ctx;
}

absl::Status WorkerClient::Pair(uint64_t fingerprint, const ModelConfig& config,
                                uint64_t content_sample) {
  fingerprint_ = fingerprint;
  {
    absl::MutexLock lock(&calls_mu_);
    interrupted_ = false;
  }
  if (absl::Status s = ValidateWorkerToken(config_.token(), "worker token"); !s.ok()) return s;
  if (channel_ == nullptr) {
    auto creds = WorkerCredentials(config_);
    if (!creds.ok()) return creds.status();
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kMaxMessageBytes);
    args.SetMaxSendMessageSize(kMaxMessageBytes);
    // Reconnect quickly after a worker restarts: a refused connection is
    // retried after 100 ms, then up to every second.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // gRPC's MIN_CONNECT_TIMEOUT: a connection attempt (TCP, TLS and the
    // HTTP/2 SETTINGS exchange) is given max(this, the backoff) to finish.
    // At 100 ms no worker more than ~100 ms of round trips away could ever
    // be reached; the call deadline is what bounds a pairing anyway.
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, CallTimeoutMs(config_));
    if (!config_.tls_server_name().empty()) {
      args.SetSslTargetNameOverride(config_.tls_server_name());
    }
    channel_ = grpc::CreateCustomChannel(address_, *creds, args);
    stub_ = v1::ExpertService::NewStub(channel_);
  }
  v1::DescribeResponse d;
  const grpc::Status s = Describe(&d);
  if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    return absl::UnimplementedError(absl::StrCat(
        "the gRPC server at ", address_, " is no smallthinker worker (it has no ExpertService",
        s.error_message().empty() ? "" : ": ", s.error_message(), ")"));
  }
  if (!s.ok()) {
    // No answer from a worker's service: say what to check. (gRPC logs why
    // it could not make the TLS client and returns only "empty address list".)
    const bool no_tls_client = !config_.tls_cert().empty() &&
                               absl::StrContains(s.error_message(), "empty address list");
    const bool no_answer = s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    return absl::Status(
        static_cast<absl::StatusCode>(s.error_code()),
        absl::StrCat("worker ", address_, ": ", s.error_message(),
                     no_tls_client ? " (the TLS client could not be set up: is tls_key the "
                                     "private key of tls_cert?)"
                     : no_answer   ? " (is the worker running at that address, and do both "
                                     "sides agree on TLS?)"
                                   : ""));
  }
  if (d.fingerprint() != fingerprint) {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker ", address_, " serves another model: its fingerprint is ", Hex(d.fingerprint()),
        ", the coordinator's is ", Hex(fingerprint), "; start it with the same GGUF"));
  }
  if (content_sample != 0 && d.content_sample() != 0 && d.content_sample() != content_sample) {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker ", address_, " has the same model file but different tensor bytes (content "
        "sample ", Hex(d.content_sample()), ", the coordinator's ", Hex(content_sample),
        "): one of the two copies is corrupt or incomplete; compare their checksums "
        "(e.g. sha256sum) and copy the file again"));
  }
  if (d.n_layers() != config.n_layers || d.n_experts() != config.n_experts ||
      d.d_model() != config.d_model || d.d_expert() != config.d_expert) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", address_, " reports a different model shape"));
  }
  description_ = d;
  return absl::OkStatus();
}

grpc::Status WorkerClient::Describe(v1::DescribeResponse* d) {
  auto ctx = NewContext(/*with_deadline=*/true);
  const CancellableCall cancellable(this, ctx.get());
  return stub_->Describe(ctx.get(), v1::DescribeRequest(), d);
}

absl::StatusOr<std::chrono::microseconds> WorkerClient::RoundTrip() {
  if (stub_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("worker ", address_, ": not paired"));
  }
  v1::DescribeResponse d;
  const auto start = std::chrono::steady_clock::now();
  const grpc::Status s = Describe(&d);
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - start);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat("worker ", address_, ": ", s.error_message()));
  }
  return took;
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
  // The worker prepares (packs) the experts before it answers: seconds for
  // a whole model on a small machine.
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(std::max(CallTimeoutMs(config_), kAssignTimeoutMs)));
  v1::AssignResponse resp;
  grpc::Status s;
  {
    const CancellableCall cancellable(this, ctx.get());
    s = stub_->Assign(ctx.get(), req, &resp);
  }
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat("worker ", address_, ": Assign: ", s.error_message()));
  }
  return absl::OkStatus();
}

WorkerClient::CancellableCall::CancellableCall(WorkerClient* client, grpc::ClientContext* ctx)
    : client_(client), ctx_(ctx) {
  absl::MutexLock lock(&client_->calls_mu_);
  client_->call_ = ctx_;
  if (client_->calls_cancelled_ || client_->interrupted_) ctx_->TryCancel();  // ends at once
}

WorkerClient::CancellableCall::~CancellableCall() {
  absl::MutexLock lock(&client_->calls_mu_);
  client_->call_ = nullptr;
}

void WorkerClient::CancelCalls() {
  absl::MutexLock lock(&calls_mu_);
  calls_cancelled_ = true;
  if (call_ != nullptr) call_->TryCancel();
}

void WorkerClient::Interrupt() {
  absl::MutexLock lock(&calls_mu_);
  interrupted_ = true;
  if (call_ != nullptr) call_->TryCancel();
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
  if (shared_cq_ == nullptr) cq_ = std::make_unique<grpc::CompletionQueue>();
  context_ = NewContext(/*with_deadline=*/false);
  // The initial metadata goes out with the first Write (StartCall and Write
  // share one operation set, so an uncorked start would have to complete
  // before the first step could be sent).
  context_->set_initial_metadata_corked(true);
  stream_ = stub_->PrepareAsyncCompute(context_.get(), cq());
  if (stream_ == nullptr) {
    cq_.reset();
    context_.reset();
    return absl::UnavailableError(absl::StrCat("worker ", address_, ": no stream"));
  }
  write_pending_ = read_pending_ = finish_pending_ = has_reply_ = broken_ = false;
  finished_ = cancelled_ = false;
  broken_cause_.clear();
  stream_->StartCall(TagOf(kStartTag));  // corked: no completion
  start_pending_ = false;
  return absl::OkStatus();
}

void WorkerClient::CloseStream() {
  if (stream_ == nullptr) return;
  if (!finished_) {
    // Cancelling ends every pending operation (with ok = false); Finish only
    // once they are done (it may receive the initial metadata too, which a
    // pending Read also asks for). On a shared queue other clients'
    // completions are handled meanwhile.
    context_->TryCancel();
    const gpr_timespec forever = gpr_inf_future(GPR_CLOCK_MONOTONIC);
    while ((start_pending_ || write_pending_ || read_pending_) && PollOnce(forever)) {
    }
    if (!finish_pending_) {  // BrokenCause may have started it
      stream_->Finish(&finish_status_, TagOf(kFinishTag));
      finish_pending_ = true;
    }
    while (finish_pending_ && PollOnce(forever)) {
    }
  }
  VLOG(1) << "worker " << address_ << ": stream finished: " << finish_status_.error_message();
  if (cq_ != nullptr) {
    cq_->Shutdown();
    void* tag;
    bool ok;
    while (cq_->Next(&tag, &ok)) {
    }
  }
  start_pending_ = write_pending_ = read_pending_ = finish_pending_ = false;
  finished_ = cancelled_ = false;
  broken_cause_.clear();
  stream_.reset();
  context_.reset();
  cq_.reset();
}

void WorkerClient::Handle(Tag tag, bool ok) {
  switch (tag) {
    case kStartTag:
      start_pending_ = false;
      break;
    case kWriteTag:
      write_pending_ = false;
      break;
    case kReadTag:
      read_pending_ = false;
      if (ok) {
        has_reply_ = true;
        reply_time_ = Clock::now();
      }
      break;
    case kFinishTag:
      finish_pending_ = false;
      return;
    case kNumTags:
      return;
  }
  // A failed operation means the call is over (the worker went away, the
  // stream was cancelled, or it ended with an error).
  if (!ok) broken_ = true;
}

bool WorkerClient::PollOnce(grpc::CompletionQueue* cq, gpr_timespec deadline) {
  if (cq == nullptr) return false;
  void* tag;
  bool ok;
  if (cq->AsyncNext(&tag, &ok, deadline) != grpc::CompletionQueue::GOT_EVENT) return false;
  const Op* op = static_cast<const Op*>(tag);
  op->client->Handle(op->tag, ok);
  return true;
}

namespace {

gpr_timespec ToGpr(Clock::time_point t) {
  const int64_t micros =
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(
                               t - Clock::now()).count());
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_micros(micros, GPR_TIMESPAN));
}

}  // namespace

void WorkerClient::Submit(v1::ComputeRequest request) {
  has_reply_ = false;
  if (stream_ == nullptr || broken_) return;  // Await reports it
  // The previous write completed before its reply could come back; its
  // completion may still be queued.
  while (write_pending_ && !broken_) {
    if (!PollOnce(ToGpr(Clock::now() + std::chrono::seconds(1)))) broken_ = true;
  }
  if (broken_) return;
  request_ = std::move(request);
  stream_->Write(request_, TagOf(kWriteTag));
  write_pending_ = true;
  stream_->Read(&reply_, TagOf(kReadTag));
  read_pending_ = true;
}

void WorkerClient::Poll() {
  if (stream_ == nullptr) return;
  const gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
  while ((start_pending_ || write_pending_ || read_pending_) && PollOnce(now)) {
  }
}

void WorkerClient::WaitReply(Clock::time_point deadline) {
  if (stream_ != nullptr && !has_reply_ && !broken_) {
    const gpr_timespec until = ToGpr(deadline);
    while (read_pending_ && !broken_) {
      if (!PollOnce(until)) break;
    }
  }
}

absl::StatusOr<const v1::ComputeResponse*> WorkerClient::Await(Clock::time_point deadline) {
  WaitReply(deadline);
  if (has_reply_) {
    has_reply_ = false;
    return &reply_;
  }
  if (stream_ == nullptr || broken_) {
    return absl::UnavailableError(
        absl::StrCat("worker ", address_, ": stream broken", BrokenCause()));
  }
  // Timed out: cancel the stream (its operations end; CloseStream reaps
  // them).
  context_->TryCancel();
  cancelled_ = true;
  broken_ = true;
  return absl::DeadlineExceededError(
      absl::StrCat("worker ", address_, ": no reply within the step timeout"));
}

std::string WorkerClient::BrokenCause() {
  if (stream_ == nullptr || cancelled_) return "";
  if (!finished_) {
    // The call is over (an operation failed), so its operations end and
    // Finish brings the worker's status, e.g. "expert 4 of layer 0 is not
    // assigned to this worker". Waiting is bounded all the same: a peer
    // that stopped answering is cancelled, and its cause stays unknown.
    const gpr_timespec limit = ToGpr(Clock::now() + std::chrono::seconds(1));
    while ((start_pending_ || write_pending_ || read_pending_) && PollOnce(limit)) {
    }
    if (!start_pending_ && !write_pending_ && !read_pending_) {
      stream_->Finish(&finish_status_, TagOf(kFinishTag));
      finish_pending_ = true;
      while (finish_pending_ && PollOnce(limit)) {
      }
    }
    if (finish_pending_ || start_pending_ || write_pending_ || read_pending_) {
      context_->TryCancel();  // CloseStream reaps the operations
      cancelled_ = true;
      return "";
    }
    finished_ = true;
    broken_cause_ = finish_status_.ok()
                        ? ": the worker ended the call"
                        : absl::StrCat(": ", absl::Status(static_cast<absl::StatusCode>(
                                                      finish_status_.error_code()),
                                                  finish_status_.error_message())
                                                      .ToString());
  }
  return broken_cause_;
}

void WorkerClient::AwaitAll(const std::vector<WorkerClient*>& clients, Clock::time_point deadline,
                            Clock::duration spin) {
  grpc::CompletionQueue* shared = nullptr;
  for (WorkerClient* c : clients) {
    if (c->shared_cq_ == nullptr || (shared != nullptr && c->shared_cq_ != shared)) {
      for (WorkerClient* x : clients) x->WaitReply(deadline);
      return;
    }
    shared = c->shared_cq_;
  }
  if (shared == nullptr) return;
  auto waiting = [&] {
    return std::any_of(clients.begin(), clients.end(),
                       [](const WorkerClient* c) { return c->AwaitingReply(); });
  };
  if (spin > Clock::duration::zero()) {
    const Clock::time_point spin_end = std::min(deadline, Clock::now() + spin);
    const gpr_timespec now = gpr_time_0(GPR_CLOCK_MONOTONIC);
    while (waiting() && Clock::now() < spin_end) PollOnce(shared, now);
  }
  const gpr_timespec until = ToGpr(deadline);
  while (waiting() && PollOnce(shared, until)) {
  }
}

}  // namespace st
