#include "expert_worker/expert_service.h"

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <ranges>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "kernels/dtype.h"
#include "model/expert_executor.h"
#include "model/local_expert_executor.h"
#include "model/mapped_repack.h"

namespace st {

namespace v1 = smallthinker::v1;

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

namespace {

// Constant-time comparison (the token is a secret).
bool SameSecret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string Hex(uint64_t v) { return absl::StrCat("0x", absl::Hex(v, absl::kZeroPad16)); }

// Frees the packed copies of one expert's matrices (mapped_repack.h).
void DropExpertCopies(const ExpertStore& store, int layer, int expert) {
  const ExpertMatrices m = store.Get(layer, expert);
  DropPackedCopy(m.gate);
  DropPackedCopy(m.up);
  DropPackedCopy(m.down);
}

}  // namespace

ExpertServiceImpl::ExpertServiceImpl(const ModelConfig& config, ExpertStore* store,
                                     ThreadPool* pool, ExpertServiceInfo info)
    : config_(config),
      store_(store),
      pool_(pool),
      info_(std::move(info)),
      instance_id_(std::random_device{}() * (uint64_t{1} << 32) ^ std::random_device{}()),
      assigned_(static_cast<size_t>(config.n_layers) * config.n_experts, 0) {}

grpc::Status ExpertServiceImpl::CheckToken(const grpc::ServerContext* ctx) const {
  if (info_.token.empty()) return grpc::Status::OK;
  const auto& md = ctx->client_metadata();
  auto it = md.find(kTokenMetadataKey);
  if (it == md.end()) {
    LOG(WARNING) << "refused call from " << ctx->peer() << ": no token";
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "this worker requires a token (coordinator: --worker-token)");
  }
  if (!SameSecret(std::string_view(it->second.data(), it->second.size()), info_.token)) {
    LOG(WARNING) << "refused call from " << ctx->peer() << ": wrong token";
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong worker token");
  }
  return grpc::Status::OK;
}

grpc::Status ExpertServiceImpl::CheckFingerprint(uint64_t fingerprint) const {
  if (fingerprint == info_.fingerprint) return grpc::Status::OK;
  const std::string msg = absl::StrCat(
      "model fingerprint mismatch: coordinator has ", Hex(fingerprint), ", this worker has ",
      Hex(info_.fingerprint), "; both must load the same GGUF");
  LOG(WARNING) << "refused pairing: " << msg;
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, msg);
}

grpc::Status ExpertServiceImpl::Describe(grpc::ServerContext* ctx, const v1::DescribeRequest*,
                                         v1::DescribeResponse* resp) {
  if (grpc::Status s = CheckToken(ctx); !s.ok()) return s;
  resp->set_fingerprint(info_.fingerprint);
  resp->set_n_layers(config_.n_layers);
  resp->set_n_experts(config_.n_experts);
  resp->set_d_model(config_.d_model);
  resp->set_d_expert(config_.d_expert);
  resp->set_top_k(config_.top_k);
  resp->set_expert_type(std::string(DTypeName(config_.expert_type)));
  resp->set_expert_bytes(store_->expert_bytes());
  resp->set_capacity_bytes(store_->capacity_bytes());
  resp->set_isa(info_.isa);
  resp->set_expert_tokens_per_second(info_.expert_tokens_per_second);
  resp->set_threads(info_.threads);
  resp->set_version("smallthinker-worker 0.1");
  resp->set_combines_tokens(true);
  resp->set_instance_id(instance_id_);
  resp->set_content_sample(info_.content_sample);
  return grpc::Status::OK;
}

grpc::Status ExpertServiceImpl::Assign(grpc::ServerContext* ctx, const v1::AssignRequest* req,
                                       v1::AssignResponse* resp) {
  if (grpc::Status s = CheckToken(ctx); !s.ok()) return s;
  if (grpc::Status s = CheckFingerprint(req->fingerprint()); !s.ok()) return s;
  // Sized from the config: assigned_ belongs to mu_, and another Assign may
  // be replacing it right now.
  std::vector<uint8_t> assigned(static_cast<size_t>(config_.n_layers) * config_.n_experts, 0);
  std::vector<ExpertKey> keys;
  keys.reserve(req->experts_size());
  for (int i = 0; i < req->experts_size(); ++i) {
    const v1::ExpertRef& e = req->experts(i);
    if (e.layer() < 0 || e.layer() >= config_.n_layers || e.expert() < 0 ||
        e.expert() >= config_.n_experts) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("experts[", i, "] = (layer ", e.layer(), ", expert ",
                                       e.expert(), ") is outside the model (", config_.n_layers,
                                       " layers, ", config_.n_experts, " experts)"));
    }
    uint8_t& slot = assigned[static_cast<size_t>(e.layer()) * config_.n_experts + e.expert()];
    if (slot) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("experts[", i, "] = (layer ", e.layer(), ", expert ",
                                       e.expert(), ") is listed twice"));
    }
    slot = 1;
    keys.push_back({e.layer(), e.expert()});
  }
  // One Assign at a time. Steps of the current assignment go on meanwhile:
  // the store and the pool are taken (compute_mu_) only briefly, and the
  // new assignment replaces the old one at the end, in one step.
  absl::MutexLock assign_lock(&assign_mu_);
  {
    absl::MutexLock compute_lock(&compute_mu_);  // no step reads the store meanwhile
    if (absl::Status s = store_->Hold(keys); !s.ok()) return ToGrpc(s);
  }
  // Make the packed copies the kernels use now, on every core, rather than
  // at each expert's first step while decoding (a fresh worker spent its
  // first tokens repacking the experts routed to it). A few experts per
  // turn of the pool: a step waits for one turn (milliseconds), not for the
  // whole assignment (seconds on a real model, past the coordinator's step
  // deadline, so that one failover's Assign made the next ones).
  const auto pack_start = std::chrono::steady_clock::now();
  auto pack = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      // As steps compute it (a transposed down in rows, converted now when
      // in a storage-only format; K-quant gates and downs packed).
      PrepareExpert(store_->Get(keys[i].layer, keys[i].expert));
    }
  };
  const size_t per_turn = pool_ != nullptr ? 2 * static_cast<size_t>(pool_->num_threads()) : 2;
  for (size_t begin = 0; begin < keys.size(); begin += per_turn) {
    if (ctx->IsCancelled()) {
      // The coordinator gave up on it (its deadline, or it marked this
      // worker down): keep the old assignment and free what this one
      // packed for experts the old one does not hold.
      absl::MutexLock compute_lock(&compute_mu_);
      absl::MutexLock lock(&mu_);
      for (size_t i = 0; i < begin; ++i) {
        if (!assigned_[static_cast<size_t>(keys[i].layer) * config_.n_experts + keys[i].expert]) {
          DropExpertCopies(*store_, keys[i].layer, keys[i].expert);
        }
      }
      LOG(WARNING) << "Assign of " << keys.size() << " experts by " << ctx->peer()
                   << " cancelled after " << begin << " were packed; the assignment stays";
      return grpc::Status(grpc::StatusCode::CANCELLED, "Assign cancelled by the coordinator");
    }
    const size_t n = std::min(per_turn, keys.size() - begin);
    // A step that waits goes first (absl::Mutex is not fair: this loop
    // would take the lock back at once, turn after turn).
    absl::MutexLock compute_lock(
        &compute_mu_,
        absl::Condition(+[](std::atomic<int>* waiting) { return waiting->load() == 0; },
                        &steps_waiting_));
    if (pool_ != nullptr) {
      pool_->ParallelFor(n, [&](size_t b, size_t e) { pack(begin + b, begin + e); });
      pool_->Park();
    } else {
      pack(begin, begin + n);
    }
  }
  VLOG(1) << "packed " << keys.size() << " experts in "
          << std::chrono::duration<double>(std::chrono::steady_clock::now() - pack_start).count()
          << " s";
  {
    // Steps validate and run under compute_mu_: each sees the old
    // assignment with its copies, or the new one.
    absl::MutexLock compute_lock(&compute_mu_);
    absl::MutexLock lock(&mu_);
    // Experts the previous assignment held and this one does not: their
    // packed copies go, or a worker re-assigned a few times (by
    // coordinators with other placements) held them all, past its
    // --memory-budget.
    for (size_t k = 0; k < assigned_.size(); ++k) {
      if (assigned_[k] && !assigned[k]) {
        DropExpertCopies(*store_, static_cast<int>(k / config_.n_experts),
                         static_cast<int>(k % config_.n_experts));
      }
    }
    assigned_ = std::move(assigned);
  }
  malloc_trim(0);  // give the freed copies back to the system, not only to malloc
  resp->set_n_experts(static_cast<int>(keys.size()));
  resp->set_bytes(store_->expert_bytes() * keys.size());
  LOG(INFO) << "assigned " << keys.size() << " experts by " << ctx->peer();
  return grpc::Status::OK;
}

grpc::Status ExpertServiceImpl::Prefetch(grpc::ServerContext* ctx, const v1::PrefetchRequest* req,
                                         v1::PrefetchResponse*) {
  if (grpc::Status s = CheckToken(ctx); !s.ok()) return s;
  for (const v1::ExpertRef& e : req->experts()) {
    if (e.layer() < 0 || e.layer() >= config_.n_layers || e.expert() < 0 ||
        e.expert() >= config_.n_experts) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("prefetch of (layer ", e.layer(), ", expert ", e.expert(),
                                       ") outside the model"));
    }
  }
  for (const v1::ExpertRef& e : req->experts()) store_->Prefetch(e.layer(), e.expert());
  return grpc::Status::OK;
}

absl::Status ExpertServiceImpl::Validate(const v1::ComputeRequest& req) const {
  const int64_t d = config_.d_model;
  if (req.layer() < 0 || req.layer() >= config_.n_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("step ", req.step_id(), ": layer ", req.layer(), " outside [0, ",
                     config_.n_layers, ")"));
  }
  if (req.n_rows() < 1 || req.n_rows() > kMaxComputeRows) {
    return absl::InvalidArgumentError(absl::StrCat("step ", req.step_id(), ": n_rows ",
                                                   req.n_rows(), " outside [1, ",
                                                   kMaxComputeRows, "]"));
  }
  const uint64_t want = static_cast<uint64_t>(req.n_rows()) * d * sizeof(float);
  if (req.hidden().size() != want) {
    return absl::InvalidArgumentError(absl::StrCat("step ", req.step_id(), ": hidden has ",
                                                   req.hidden().size(), " bytes, expected ", want,
                                                   " (n_rows ", req.n_rows(), " x d_model ", d,
                                                   " x 4)"));
  }
  if (req.row_size() != req.expert_size()) {
    return absl::InvalidArgumentError(absl::StrCat("step ", req.step_id(), ": ", req.row_size(),
                                                   " rows but ", req.expert_size(), " experts"));
  }
  // items <= 4096 * top_k, at most 65536 (expert.proto).
  const int max_items = static_cast<int>(
      std::min<int64_t>(kMaxComputeItems, int64_t{kMaxComputeRows} * config_.top_k));
  if (req.row_size() < 1 || req.row_size() > max_items) {
    return absl::InvalidArgumentError(absl::StrCat("step ", req.step_id(), ": ", req.row_size(),
                                                   " items outside [1, ", max_items, "]"));
  }
  if (req.weight_size() > 0) {
    if (req.weight_size() != req.row_size()) {
      return absl::InvalidArgumentError(absl::StrCat("step ", req.step_id(), ": ",
                                                     req.weight_size(), " weights for ",
                                                     req.row_size(), " items"));
    }
    // Whole tokens: runs of top_k items on one row, distinct experts, rows
    // increasing. (Slot order within a run is the coordinator's to keep.)
    const int k = config_.top_k;
    if (req.row_size() % k != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "step ", req.step_id(), ": with weights, items must be whole tokens of top_k ", k,
          " slots, but there are ", req.row_size()));
    }
    for (int i = 0; i < req.weight_size(); ++i) {
      if (!std::isfinite(req.weight(i))) {
        return absl::InvalidArgumentError(
            absl::StrCat("step ", req.step_id(), ": weight[", i, "] = ", req.weight(i),
                         " is not finite"));
      }
      const int first = i - i % k;
      if (i != first && req.row(i) != req.row(first)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "step ", req.step_id(), ": with weights, items ", first, "..", first + k - 1,
            " must be one token's top_k slots, but row[", i, "] = ", req.row(i), " and row[",
            first, "] = ", req.row(first)));
      }
      if (i == first && i > 0 && req.row(i) <= req.row(i - 1)) {
        return absl::InvalidArgumentError(
            absl::StrCat("step ", req.step_id(), ": with weights, rows must increase, but row[",
                         i, "] = ", req.row(i), " follows ", req.row(i - 1)));
      }
      for (int j = first; j < i; ++j) {
        if (req.expert(j) == req.expert(i)) {
          return absl::InvalidArgumentError(
              absl::StrCat("step ", req.step_id(), ": with weights, expert ", req.expert(i),
                           " twice in the token of items ", first, "..", first + k - 1));
        }
      }
    }
  }
  // The reply carries d_model floats per item (per row when combining): it
  // must fit a message, or the worker would build it (GBs at the 21B's
  // width and kMaxComputeItems) only for its write to fail.
  const uint64_t reply_bytes =
      static_cast<uint64_t>(req.weight_size() > 0 ? req.n_rows() : req.row_size()) * d *
      sizeof(float);
  if (reply_bytes + kReplyEnvelopeBytes > kMaxMessageBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "step ", req.step_id(), ": the reply would carry ", reply_bytes,
        " bytes, over the message cap of ", kMaxMessageBytes, "; send fewer items per request"));
  }
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < req.row_size(); ++i) {
    if (req.row(i) < 0 || req.row(i) >= req.n_rows()) {
      return absl::InvalidArgumentError(absl::StrCat("step ", req.step_id(), ": row[", i, "] = ",
                                                     req.row(i), " outside [0, ", req.n_rows(),
                                                     ")"));
    }
    const int e = req.expert(i);
    if (e < 0 || e >= config_.n_experts) {
      return absl::InvalidArgumentError(absl::StrCat("step ", req.step_id(), ": expert[", i,
                                                     "] = ", e, " outside [0, ",
                                                     config_.n_experts, ")"));
    }
    if (!assigned_[static_cast<size_t>(req.layer()) * config_.n_experts + e]) {
      // Most likely another coordinator's Assign replaced this one's.
      return absl::FailedPreconditionError(absl::StrCat(
          "step ", req.step_id(), ": expert ", e, " of layer ", req.layer(),
          " is not assigned to this worker (it holds what the last Assign named: a worker "
          "serves one coordinator at a time, and another may have replaced this one's "
          "assignment)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ExpertServiceImpl::Run(const v1::ComputeRequest& req, v1::ComputeResponse* resp) {
  const auto start = std::chrono::steady_clock::now();
  steps_waiting_.fetch_add(1);
  absl::MutexLock lock(&compute_mu_);
  steps_waiting_.fetch_sub(1);
  // Checked under compute_mu_, so that an Assign does not replace the
  // assignment (and drop the copies of the experts it no longer holds)
  // between the check and the step.
  if (absl::Status s = Validate(req); !s.ok()) return s;
  if (pool_ != nullptr) pool_->BindCaller();  // the Compute thread drives the pool
  const size_t d = config_.d_model;
  const int n_items = req.row_size();
  const float* hidden = reinterpret_cast<const float*>(req.hidden().data());
  const bool combine = req.weight_size() > 0;
  std::string* output = resp->mutable_output();
  output->resize(static_cast<size_t>(combine ? req.n_rows() : n_items) * d * sizeof(float));

  // Per-item outputs: straight into the reply, or (combining) into a
  // scratch buffer the rows are combined from.
  if (combine) item_out_.resize(static_cast<size_t>(n_items) * d);
  float* out = combine ? item_out_.data() : reinterpret_cast<float*>(output->data());
  // Group items by expert, keeping item order inside a group (the order the
  // coordinator's LocalExpertExecutor would use); larger groups first, as
  // there.
  GroupByExpert(config_.n_experts, std::views::iota(0, n_items),
                [&](int i) { return req.expert(i); }, by_expert_, used_);
  // Packed experts (the usual case) or K-quant ones in rows: all of the step's experts in two pool
  // phases (model/expert_phases.h), the path a single process takes; else
  // expert by expert.
  matrices_.resize(config_.n_experts);
  bool phases = true;
  for (int e : used_) {
    ExpertMatrices m = store_->Get(req.layer(), e);
    if (!m.down_transposed) m = PrepareExpert(m);
    phases = phases && ExpertPhases::Supports(m);
    matrices_[e] = m;
  }
  if (phases) {
    phases_.Run([this](int e) { return matrices_[e]; }, by_expert_, used_, /*top_k=*/1,
                req.row().data(), hidden, req.n_rows(), out, pool_, /*sparsity=*/nullptr);
  } else {
    for (int e : used_) {
      const std::vector<int>& items = by_expert_[e];
      const int n = static_cast<int>(items.size());
      gathered_.resize(n * d);
      expert_out_.resize(n * d);
      for (int i = 0; i < n; ++i) {
        std::memcpy(&gathered_[i * d], hidden + static_cast<size_t>(req.row(items[i])) * d,
                    d * sizeof(float));
      }
      const ExpertMatrices m = store_->Get(req.layer(), e);
      LocalExpertExecutor::ComputeExpert(m.gate, m.up, m.down, m.down_transposed,
                                         gathered_.data(), n, expert_out_.data(), pool_);
      for (int i = 0; i < n; ++i) {
        std::memcpy(out + static_cast<size_t>(items[i]) * d, &expert_out_[i * d],
                    d * sizeof(float));
      }
    }
  }
  if (combine) {
    // Items are whole tokens, top_k slots each, rows increasing (Validate):
    // each token combined exactly as the coordinator would; rows no item
    // names stay zero.
    float* rows = reinterpret_cast<float*>(output->data());
    std::fill(rows, rows + static_cast<size_t>(req.n_rows()) * d, 0.0f);
    const int k = config_.top_k;
    for (int first = 0; first < n_items; first += k) {
      CombineRows(req.weight().data() + first, out + static_cast<size_t>(first) * d, k, d,
                  rows + static_cast<size_t>(req.row(first)) * d);
    }
  }
  // The next request is at least a network round trip away: free the cores
  // (the coordinator may share them) instead of spinning.
  if (pool_ != nullptr) pool_->Park();
  resp->set_step_id(req.step_id());
  resp->set_compute_us(std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::steady_clock::now() - start)
                           .count());
  return absl::OkStatus();
}

grpc::Status ExpertServiceImpl::CheckComputeCall(const grpc::ServerContext* ctx) const {
  if (grpc::Status s = CheckToken(ctx); !s.ok()) return s;
  const auto& md = ctx->client_metadata();
  auto it = md.find(kFingerprintMetadataKey);
  uint64_t fingerprint = 0;
  if (it == md.end() ||
      !absl::SimpleAtoi(std::string(it->second.data(), it->second.size()), &fingerprint)) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("Compute needs the coordinator's model fingerprint in "
                                     "metadata '", kFingerprintMetadataKey, "'"));
  }
  return CheckFingerprint(fingerprint);
}

}  // namespace st
