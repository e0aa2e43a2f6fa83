#include "model/forward.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "kernels/norm.h"
#include "kernels/packed_matrix.h"
#include "kernels/quant.h"
#include "kernels/rope.h"
#include "kernels/routing.h"

namespace st {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// y[i] = x[i] @ W^T for n rows of x.
// The activations' buffers are kept per thread: a decode step projects ~100
// times, and each fresh Activations cost a few heap allocations.
void Project(const MatrixRef& w, const float* x, int n, float* y, ThreadPool* pool) {
  thread_local Activations act;
  act.PrepareFor(w.type, x, n, w.cols);
  MatMul(w, act, y, pool);
}

void NormRows(const float* x, const std::vector<float>& gain, int n, int d, float eps, float* y) {
  for (int t = 0; t < n; ++t) RmsNorm(x + t * d, gain.data(), d, eps, y + t * d);
}

void AddRows(const float* delta, int n, int d, float* x) {
  AddTo(delta, x, static_cast<size_t>(n) * d);
}

}  // namespace

Forward::Forward(const ModelConfig& config, const DenseWeights& weights,
                 ExpertExecutor* experts, ThreadPool* pool, int max_batch)
    : config_(config),
      weights_(weights),
      experts_(experts),
      pool_(pool),
      max_batch_(std::max(1, max_batch)) {
  const size_t b = max_batch_;
  x_.resize(b * config.d_model);
  h_.resize(b * config.d_model);
  q_.resize(b * config.q_dim());
  k_.resize(b * config.kv_dim());
  v_.resize(b * config.kv_dim());
  att_.resize(b * config.q_dim());
  delta_.resize(b * config.d_model);
  router_.resize(b * config.n_experts);
  routing_counts_.assign(static_cast<size_t>(config.n_layers) * config.n_experts, 0);
  decode_steps_.resize(b + 1);
  expert_seen_.resize(config.n_experts);
}

void Forward::set_speculate(bool on) {
  speculate_ = on;
  if (!on || !guess_router_.empty()) return;
  // Which routers get a copy, and where each goes (64-byte aligned).
  auto copied = [](const MatrixRef& r) {
    return r.storage == nullptr && r.data != nullptr &&
           (r.type == DType::kF32 || r.type == DType::kF16 || r.type == DType::kBF16) &&
           CanPack(DType::kQ8_0, r.rows, r.cols);
  };
  auto bytes_of = [](const MatrixRef& r) {
    return (r.rows * RowBytes(DType::kQ8_0, r.cols) + 63) / 64 * 64;
  };
  // (Layer 0 is never guessed: its router is read only by routing.)
  size_t bytes = 0;
  for (size_t l = 1; l < weights_.layers.size(); ++l) {
    bytes += copied(weights_.layers[l].router) ? bytes_of(weights_.layers[l].router) : 0;
  }
  if (bytes > 0) {
    absl::StatusOr<std::unique_ptr<HugePageArena>> arena = HugePageArena::Create(bytes);
    if (arena.ok()) {
      guess_arena_ = *std::move(arena);
    } else {
      LOG(WARNING) << "speculation reads the routers as stored: " << arena.status();
    }
  }
  char* dst = guess_arena_ != nullptr ? guess_arena_->data() : nullptr;
  std::vector<float> row;
  std::vector<char> rows;
  for (size_t l = 0; l < weights_.layers.size(); ++l) {
    const MatrixRef& r = weights_.layers[l].router;
    if (l == 0 || dst == nullptr || !copied(r)) {
      guess_router_.push_back(r);
      continue;
    }
    const size_t row_bytes = RowBytes(DType::kQ8_0, r.cols);
    rows.resize(r.rows * row_bytes);
    row.resize(r.cols);
    for (size_t i = 0; i < r.rows; ++i) {
      DequantizeRow(r.type, r.row(i), row.data(), r.cols);
      QuantizeRow(DType::kQ8_0, row.data(), rows.data() + i * row_bytes, r.cols);
    }
    PackRows(DType::kQ8_0, rows.data(), r.rows, r.cols, dst);
    guess_router_.push_back(MatrixRef{
        .type = DType::kQ8_0, .data = nullptr, .rows = r.rows, .cols = r.cols, .packed = dst});
    dst += bytes_of(r);
  }
}

absl::Status Forward::CheckSequence(const KvCache& kv, int64_t pos0,
                                    absl::Span<const int32_t> tokens) const {
  if (tokens.empty()) return absl::InvalidArgumentError("no tokens to run");
  if (kv.max_batch() < max_batch_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "KV cache rings sized for batches of ", kv.max_batch(), " but the forward pass runs ",
        max_batch_));
  }
  if (pos0 < 0 || pos0 + static_cast<int64_t>(tokens.size()) > kv.max_tokens()) {
    return absl::OutOfRangeError(absl::StrCat("positions ", pos0, "..", pos0 + tokens.size() - 1,
                                              " exceed the context size ", kv.max_tokens()));
  }
  for (int32_t t : tokens) {
    if (t < 0 || t >= config_.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", t, " outside the vocabulary [0, ", config_.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status Forward::Run(KvCache& kv, int64_t pos0, absl::Span<const int32_t> tokens,
                          bool all_logits, std::vector<float>* logits) {
  ST_RETURN_IF_ERROR(CheckSequence(kv, pos0, tokens));
  const size_t vocab = config_.vocab_size;
  logits->assign(all_logits ? tokens.size() * vocab : vocab, 0.0f);
  for (size_t start = 0; start < tokens.size(); start += max_batch_) {
    const size_t n = std::min<size_t>(max_batch_, tokens.size() - start);
    const bool last = start + n == tokens.size();
    float* out = all_logits ? logits->data() + start * vocab : (last ? logits->data() : nullptr);
    const Segment seg{&kv, pos0 + static_cast<int64_t>(start), 0, static_cast<int>(n)};
    const LogitRows rows =
        all_logits ? LogitRows::kAll : (last ? LogitRows::kLastOfEachSegment : LogitRows::kNone);
    ST_RETURN_IF_ERROR(RunBatch({&seg, 1}, tokens.subspan(start, n), rows, out));
  }
  return absl::OkStatus();
}

absl::Status Forward::RunSequences(absl::Span<const SequenceInput> seqs,
                                   std::vector<float>* logits) {
  if (seqs.empty()) return absl::InvalidArgumentError("no sequences to run");
  std::vector<Segment> segments;
  std::vector<int32_t> tokens;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const SequenceInput& s = seqs[i];
    if (s.kv == nullptr) return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": no KV cache"));
    ST_RETURN_IF_ERROR(Annotate(CheckSequence(*s.kv, s.pos0, s.tokens), absl::StrCat("sequence ", i)));
    segments.push_back({s.kv, s.pos0, static_cast<int>(tokens.size()),
                        static_cast<int>(s.tokens.size())});
    tokens.insert(tokens.end(), s.tokens.begin(), s.tokens.end());
  }
  if (tokens.size() > static_cast<size_t>(max_batch_)) {
    return absl::InvalidArgumentError(absl::StrCat(tokens.size(), " tokens in one step exceed the batch of ", max_batch_));
  }
  logits->assign(seqs.size() * static_cast<size_t>(config_.vocab_size), 0.0f);
  return RunBatch(segments, tokens, LogitRows::kLastOfEachSegment, logits->data());
}

// The narrative of MODEL.md 4.2 for a batch of n tokens (of one or more
// sequences).
absl::Status Forward::RunBatch(absl::Span<const Segment> segments,
                               absl::Span<const int32_t> tokens, LogitRows rows, float* logits) {
  const int n = static_cast<int>(tokens.size());
  const int d = config_.d_model;
  const double t_step = Now();
  if (pool_ != nullptr) pool_->BindCaller();  // this thread drives the pool
  step_ = DecodeStepCounters{};
  Embed(tokens);                                               // x = E[tokens]        [n, d]
  for (int l = 0; l < config_.n_layers; ++l) {
    const bool logits = AttentionInputs(l, n);                 // q, k, v (+ router logits of raw x)
    Route(l, weights_.layers[l].router, n, routes_, /*count=*/true, logits);  // from raw x
    experts_->Prepare(l, routes_);                             // start expert fetches
    Attention(l, segments, n);                                 // x += Attn(RmsNorm(x)) per sequence
    // Guess layer l+1's experts (one-token steps only: a batch needs most of
    // a layer's experts anyway, and executors ignore guesses for it).
    if (speculate_ && n == 1 && l + 1 < config_.n_layers) {
      Route(l + 1, guess_router_[l + 1], n, speculated_, /*count=*/false);  // x with attention added
      experts_->Speculate(l + 1, speculated_);
    }
    ST_RETURN_IF_ERROR(Annotate(Experts(l, n), absl::StrCat("layer ", l)));  // x += MoE(RmsNorm(x))
  }
  const bool decode = std::all_of(segments.begin(), segments.end(),
                                  [](const Segment& s) { return s.n == 1; });
  if (rows == LogitRows::kNone) return absl::OkStatus();
  const double t0 = Now();
  NormRows(x_.data(), weights_.output_norm, n, d, config_.rms_eps, h_.data());
  if (rows == LogitRows::kAll) {
    LmHead(n, h_.data(), logits);                              // [n, vocab]
  } else {
    // Gather the last row of each sequence, then one LM head over them.
    const int m = static_cast<int>(segments.size());
    for (int i = 0; i < m; ++i) {
      const int row = segments[i].row0 + segments[i].n - 1;
      std::memcpy(delta_.data() + static_cast<size_t>(i) * d,
                  h_.data() + static_cast<size_t>(row) * d, d * sizeof(float));
    }
    LmHead(m, delta_.data(), logits);                          // [m, vocab]
  }
  const double t1 = Now();
  zones_.lm_head += t1 - t0;
  if (decode) {
    DecodeStepCounters& c = decode_steps_[n];
    ++c.steps;
    c.experts_touched += step_.experts_touched;
    c.kv_bytes += step_.kv_bytes;
    c.seconds += t1 - t_step;
  }
  return absl::OkStatus();
}

void Forward::Embed(absl::Span<const int32_t> tokens) {
  const MatrixRef& e = weights_.token_embd;
  for (size_t t = 0; t < tokens.size(); ++t) {
    // A K-quant table may be left in the file (weights.cc).
    DequantizeMatrixRow(e, tokens[t], x_.data() + t * e.cols);
  }
}

void Forward::Route(int layer, const MatrixRef& router, int n, Routes& routes, bool count,
                    bool logits_ready) {
  const double t0 = Now();
  const int n_exp = config_.n_experts, k = config_.top_k;
  if (!logits_ready) Project(router, x_.data(), n, router_.data(), pool_);  // [n, E]
  routes.n_tokens = n;
  routes.top_k = k;
  routes.ids.resize(static_cast<size_t>(n) * k);
  routes.weights.resize(static_cast<size_t>(n) * k);
  for (int t = 0; t < n; ++t) {
    const float* logit = router_.data() + static_cast<size_t>(t) * n_exp;
    int* ids = routes.ids.data() + t * k;
    SelectTopK(logit, n_exp, k, ids);
    GatingWeights(config_.gating, logit, ids, k, routes.weights.data() + t * k);
    if (!count) continue;
    for (int j = 0; j < k; ++j) {
      ++routing_counts_[static_cast<size_t>(layer) * n_exp + ids[j]];
      step_.experts_touched += expert_seen_[ids[j]] == 0;
      expert_seen_[ids[j]] = 1;
    }
  }
  if (count) std::fill(expert_seen_.begin(), expert_seen_.end(), 0);
  if (count && layer == 0) routed_tokens_ += n;
  zones_.route += Now() - t0;
}

bool Forward::AttentionInputs(int layer, int n) {
  const double t0 = Now();
  const LayerWeights& w = weights_.layers[layer];
  const int d = config_.d_model;
  NormRows(x_.data(), w.attn_norm, n, d, config_.rms_eps, h_.data());  // h = RmsNorm(x)  [n, d]
  thread_local Activations act;  // buffers reused across layers (see Project)
  act.PrepareFor(w.wq.type, h_.data(), n, d);
  bool router_done = false;
  if (w.wk.type == w.wq.type && w.wv.type == w.wq.type) {
    // One fork-join for q, k, v and the router's logits (of the raw x, as
    // MODEL.md 4.3 says; the router is tiny, and alone its fork-join cost
    // more than its rows, or ~16 us of F32 reads on one thread).
    thread_local Activations raw;
    raw.PrepareFor(w.router.type, x_.data(), n, d);
    const MatMulJob jobs[] = {{&w.wq, &act, q_.data()},                  // q [n, q_dim]
                              {&w.wk, &act, k_.data()},                  // k [n, kv_dim]
                              {&w.wv, &act, v_.data()},                  // v [n, kv_dim]
                              {&w.router, &raw, router_.data()}};        // [n, E]
    MatMulMany(jobs, pool_);
    router_done = true;
  } else {
    MatMul(w.wq, act, q_.data(), pool_);
    act.PrepareFor(w.wk.type, h_.data(), n, d);
    MatMul(w.wk, act, k_.data(), pool_);
    act.PrepareFor(w.wv.type, h_.data(), n, d);
    MatMul(w.wv, act, v_.data(), pool_);
  }
  zones_.attention += Now() - t0;
  return router_done;
}

void Forward::Attention(int layer, absl::Span<const Segment> segments, int n) {
  const double t0 = Now();
  const LayerWeights& w = weights_.layers[layer];
  const LayerConfig& lc = config_.layers[layer];
  const int d = config_.d_model, qd = config_.q_dim(), kvd = config_.kv_dim();
  const int hd = config_.head_dim, group = config_.n_heads / config_.n_kv_heads;
  // A step where every sequence decodes one token: each (token, kv head)
  // item rotates and stores its own head's q and k (and stores v) before it
  // attends, off the caller's serial path. With several tokens of one
  // sequence in a step (prefill), a token attends over rows other items
  // store, so RoPE and the stores run first, here.
  const bool one_token_each = std::all_of(segments.begin(), segments.end(),
                                          [](const Segment& s) { return s.n == 1; });
  if (!one_token_each) {
    for (const Segment& seg : segments) {
      for (int i = 0; i < seg.n; ++i) {
        const int t = seg.row0 + i;
        if (lc.use_rope) {
          RopeNeox(q_.data() + t * qd, config_.n_heads, hd, seg.pos0 + i, lc.rope_theta);
          RopeNeox(k_.data() + t * kvd, config_.n_kv_heads, hd, seg.pos0 + i, lc.rope_theta);
        }
        seg.kv->Store(layer, seg.pos0 + i, k_.data() + t * kvd, v_.data() + t * kvd);
      }
    }
  }
  // One work item per (token, kv head): the kv head's group of query heads
  // attends over that head's keys in its own sequence's cache, so decode
  // (n = 1) still uses every thread.
  const AttentionShape shape{group, 1, hd};
  row_segment_.resize(n);
  for (size_t s = 0; s < segments.size(); ++s) {
    for (int i = 0; i < segments[s].n; ++i) row_segment_[segments[s].row0 + i] = static_cast<int>(s);
  }
  auto attend = [&](size_t begin, size_t end) {
    std::vector<float> scratch;
    for (size_t item = begin; item < end; ++item) {
      const size_t t = item / config_.n_kv_heads, h = item % config_.n_kv_heads;
      const Segment& seg = segments[row_segment_[t]];
      const KvRingView view = seg.kv->View(layer);
      const int64_t pos = seg.pos0 + static_cast<int64_t>(t) - seg.row0;
      const int64_t lo = lc.window > 0 ? std::max<int64_t>(0, pos - lc.window + 1) : 0;
      scratch.resize(pos - lo + 1);
      const KvRingView head = view.Columns(h * hd);
      const size_t q_off = t * qd + h * group * hd;
      if (one_token_each) {
        float* k = k_.data() + t * kvd + h * hd;
        if (lc.use_rope) {
          RopeNeox(q_.data() + q_off, group, hd, pos, lc.rope_theta);
          RopeNeox(k, 1, hd, pos, lc.rope_theta);
        }
        seg.kv->StoreColumns(layer, pos, static_cast<int>(h) * hd, hd, k,
                             v_.data() + t * kvd + h * hd);
      }
      AttendRing(shape, q_.data() + q_off, head, lo, pos, att_.data() + q_off, scratch.data());
    }
  };
  for (int t = 0; t < n; ++t) {  // K and V rows attention reads
    const Segment& seg = segments[row_segment_[t]];
    const int64_t pos = seg.pos0 + t - seg.row0;
    const int64_t lo = lc.window > 0 ? std::max<int64_t>(0, pos - lc.window + 1) : 0;
    step_.kv_bytes += static_cast<uint64_t>(pos - lo + 1) * 2 * RowBytes(seg.kv->type(), kvd);
  }
  const size_t items = static_cast<size_t>(n) * config_.n_kv_heads;
  if (pool_ != nullptr) {
    pool_->ParallelFor(items, attend);
  } else {
    attend(0, items);
  }
  Project(w.wo, att_.data(), n, delta_.data(), pool_);                 // a = Wo att  [n, d]
  AddRows(delta_.data(), n, d, x_.data());                             // x += a
  zones_.attention += Now() - t0;
}

absl::Status Forward::Experts(int layer, int n) {
  const double t0 = Now();
  const int d = config_.d_model;
  NormRows(x_.data(), weights_.layers[layer].ffn_norm, n, d, config_.rms_eps, h_.data());
  ST_RETURN_IF_ERROR(experts_->Run(layer, routes_, h_.data(), delta_.data()));  // m [n, d]
  AddRows(delta_.data(), n, d, x_.data());                                      // x += m
  zones_.experts += Now() - t0;
  return absl::OkStatus();
}

void Forward::LmHead(int n_rows, const float* x, float* logits) {
  Project(weights_.output, x, n_rows, logits, pool_);
}

}  // namespace st
