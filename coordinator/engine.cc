#include "coordinator/engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "coordinator/request_limits.h"
#include "glog/logging.h"
#include "model/sampler.h"
#include "model/stream_decoder.h"

namespace st {

// State shared between the engine and the consumer of one request.
struct RequestStream::Shared {
  EngineRequest request;
  absl::Time arrival;
  std::atomic<bool> cancelled{false};
  Engine* engine = nullptr;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<EngineEvent> events;
  bool ended = false;  // the final event has been pushed

  void Push(EngineEvent e) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ended = ended || e.done;
      events.push_back(std::move(e));
    }
    cv.notify_all();
  }
};

// A request holding a slot: its KV cache, sampler, and streaming state.
struct Engine::Active {
  std::shared_ptr<RequestStream::Shared> shared;
  std::unique_ptr<KvCache> kv;
  uint64_t kv_bytes = 0;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StopChecker> stop;
  std::unique_ptr<StreamDecoder> decoder;
  std::vector<int32_t> history;  // tokens whose keys/values are in kv
  size_t prefilled = 0;          // prompt tokens already in kv
  int32_t next = -1;             // sampled token waiting to be run (decode)
  std::vector<int32_t> pending_ids;  // sampled since the last event
  absl::Time admitted, first_token, last_token;
  int generated = 0;
  std::vector<int32_t> stop_ids;
  std::string tail;  // text of the finishing token, sent with the final event
  int step_rows = 0;  // tokens this request contributes to the current step
};

RequestStream::Poll RequestStream::Next(EngineEvent* event, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(shared_->mu);
  auto ready = [&] { return !shared_->events.empty() || shared_->ended; };
  if (timeout == absl::InfiniteDuration()) {
    shared_->cv.wait(lock, ready);
  } else if (!shared_->cv.wait_for(lock, absl::ToChronoNanoseconds(timeout), ready)) {
    return Poll::kTimeout;
  }
  if (shared_->events.empty()) return Poll::kEnded;
  *event = std::move(shared_->events.front());
  shared_->events.pop_front();
  return Poll::kEvent;
}

RequestStream::~RequestStream() {
  // Only the flag: the scheduler steps while the request is active, so it
  // needs no wake-up, and the engine may already be gone (it ended every
  // request first).
  if (shared_ != nullptr) shared_->cancelled.store(true);
}

void RequestStream::Cancel() {
  if (shared_->cancelled.exchange(true)) return;
  Engine* e = shared_->engine;
  {
    std::lock_guard<std::mutex> lock(e->mu_);
  }
  e->cv_.notify_all();
}

Engine::Engine(Model& model, const EngineOptions& options)
    : model_(model), options_(options), started_(absl::Now()) {
  options_.parallel = std::max(1, options_.parallel);
  options_.queue = std::max(0, options_.queue);
  options_.context_size =
      std::clamp<int64_t>(options_.context_size, 1, model.config().context_length);
  step_tokens_ = model.forward().max_batch();
  // Every active request decodes one token per step, and a step holds at
  // most max_batch tokens.
  options_.parallel = std::min(options_.parallel, step_tokens_);
  if (options_.prefill_chunk <= 0 || options_.prefill_chunk > step_tokens_) {
    options_.prefill_chunk = step_tokens_;
  }
  const Tokenizer& tok = model.tokenizer();
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (tok.IsEndOfGeneration(id)) stop_ids_.push_back(id);
  }
  stats_.kv_cache_budget_bytes = options_.kv_budget_bytes;
  if (options_.warmup_tokens > 0) WarmUp();
  cache_ = ReadCacheCounters(model_);  // before the scheduler thread exists
  scheduler_ = std::thread([this] { SchedulerLoop(); });
}

Engine::~Engine() { Shutdown(); }

void Engine::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (scheduler_.joinable()) scheduler_.join();
}

void Engine::WarmUp() {
  const int n = static_cast<int>(std::min<int64_t>(
      {options_.warmup_tokens, step_tokens_, options_.context_size - 1}));
  if (n < 1) return;
  KvCache kv(model_.config(), n + 1, step_tokens_);
  std::vector<int32_t> tokens(n);
  for (int i = 0; i < n; ++i) tokens[i] = static_cast<int32_t>((7919 * (i + 1)) % model_.config().vocab_size);
  std::vector<float> logits;
  SequenceInput prompt{&kv, 0, tokens};
  absl::Status s = model_.forward().RunSequences({&prompt, 1}, &logits);
  SequenceInput decode{&kv, n, absl::MakeConstSpan(tokens).subspan(0, 1)};
  if (s.ok()) s = model_.forward().RunSequences({&decode, 1}, &logits);
  if (!s.ok()) LOG(WARNING) << "engine warm-up failed (requests will show the error): " << s;
}

uint64_t Engine::KvBytesFor(int64_t context_size) const {
  // Arithmetic only: a request must cost nothing before it is admitted (a
  // cache built just to measure it held ~1 GiB per unseen context size of
  // the 4b model, outside every limit, even for requests refused as busy).
  return KvCache::BytesFor(model_.config(), context_size, step_tokens_);
}

absl::Status Engine::Validate(EngineRequest& request) const {
  const int vocab = model_.config().vocab_size;
  if (request.prompt.empty()) return absl::InvalidArgumentError("empty prompt");
  for (int32_t id : request.prompt) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " outside the vocabulary [0, ", vocab, ")"));
    }
  }
  if (request.context_size < 0 || request.context_size > options_.context_size) {
    return absl::InvalidArgumentError(absl::StrCat("context size ", request.context_size,
                                                   " outside [0, ", options_.context_size, "]"));
  }
  if (request.context_size == 0) request.context_size = options_.context_size;
  if (static_cast<int64_t>(request.prompt.size()) >= request.context_size) {
    return serve::ContextLengthExceeded(
        absl::StrCat("prompt of ", request.prompt.size(), " tokens does not fit the context of ",
                     request.context_size, " tokens"));
  }
  return ValidateSamplingParams(request.options.sampling);
}

absl::StatusOr<std::unique_ptr<RequestStream>> Engine::Submit(EngineRequest request) {
  std::vector<EngineRequest> one;
  one.push_back(std::move(request));
  auto streams = SubmitAll(std::move(one));
  if (!streams.ok()) return streams.status();
  return std::move((*streams)[0]);
}

absl::StatusOr<std::vector<std::unique_ptr<RequestStream>>> Engine::SubmitAll(
    std::vector<EngineRequest> requests) {
  std::vector<std::shared_ptr<RequestStream::Shared>> shared;
  uint64_t largest_kv = 0;
  int64_t largest_context = 0;
  const absl::Time now = absl::Now();
  for (size_t i = 0; i < requests.size(); ++i) {
    if (absl::Status s = Validate(requests[i]); !s.ok()) {
      if (requests.size() == 1) return s;
      return absl::Status(s.code(), absl::StrCat("request ", i, ": ", s.message()));
    }
    if (const uint64_t kv = KvBytesFor(requests[i].context_size); kv > largest_kv) {
      largest_kv = kv;
      largest_context = requests[i].context_size;
    }
    auto sh = std::make_shared<RequestStream::Shared>();
    sh->request = std::move(requests[i]);
    sh->arrival = now;
    sh->engine = this;
    shared.push_back(std::move(sh));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::UnavailableError("server shutting down");
    if (options_.kv_budget_bytes > 0 && largest_kv > options_.kv_budget_bytes) {
      // Never admissible, so not RESOURCE_EXHAUSTED (which clients retry).
      stats_.requests_rejected += shared.size();
      // The largest context that fits, for the hint.
      int64_t lo = 0, hi = largest_context;
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo + 1) / 2;
        if (KvBytesFor(mid) <= options_.kv_budget_bytes) {
          lo = mid;
        } else {
          hi = mid - 1;
        }
      }
      return absl::OutOfRangeError(absl::StrCat(
          "the KV cache of a ", largest_context, "-token context (", largest_kv,
          " bytes) exceeds the KV budget of ", options_.kv_budget_bytes,
          " bytes; ask for a context_size of at most ", lo));
    }
    // Full when more than `queue` would wait: those that cannot start now,
    // as AdmitLocked takes them (in order, while a slot is free and the KV
    // budget has room for the request's cache). A batch is taken whole or
    // not at all.
    int startable = 0;
    {
      int slots = options_.parallel - active_count_;
      uint64_t kv = kv_in_use_;
      auto starts = [&](const RequestStream::Shared& sh) {
        const uint64_t bytes = KvBytesFor(sh.request.context_size);
        if (slots <= 0 || (options_.kv_budget_bytes > 0 && kv + bytes > options_.kv_budget_bytes)) {
          return false;
        }
        --slots;
        kv += bytes;
        return true;
      };
      bool blocked = false;
      for (const auto& sh : waiting_) {
        if (!(blocked = blocked || !starts(*sh))) ++startable;
      }
      for (const auto& sh : shared) {
        if (!(blocked = blocked || !starts(*sh))) ++startable;
      }
    }
    if (static_cast<int>(waiting_.size() + shared.size()) - startable > options_.queue) {
      stats_.requests_rejected += shared.size();
      return absl::ResourceExhaustedError(absl::StrCat(
          "server busy: ", active_count_, " of ", options_.parallel, " requests generating and ",
          waiting_.size(), " waiting (room for ", options_.parallel + options_.queue,
          " in all: --parallel ", options_.parallel, " plus --queue ", options_.queue, ")"));
    }
    stats_.requests_total += shared.size();
    for (auto& sh : shared) waiting_.push_back(sh);
  }
  cv_.notify_all();
  std::vector<std::unique_ptr<RequestStream>> streams;
  for (auto& sh : shared) streams.push_back(std::unique_ptr<RequestStream>(new RequestStream(sh)));
  return streams;
}

EngineStats Engine::stats() const {
  EngineStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = stats_;
    s.requests_processing = active_count_;
    s.requests_deferred = static_cast<int>(waiting_.size());
    s.kv_cache_bytes = kv_in_use_;
    s.uptime_seconds = absl::ToDoubleSeconds(absl::Now() - started_);
    const absl::Time now = absl::Now();
    int tokens = 0;
    for (const auto& [t, n] : recent_) {
      if (now - t <= absl::Seconds(10)) tokens += n;
    }
    // Over the last 10 s, or since the start when that is less (right after
    // it, 1819 tokens in 0.6 s had read as 181.9 tok/s).
    const double window = std::clamp(s.uptime_seconds, 1e-3, 10.0);
    s.recent_tokens_per_second = tokens / window;
    s.cache = cache_;
  }
  s.workers = ReadWorkerCounters(model_);  // thread-safe on its own
  return s;
}

void Engine::AdmitLocked(std::vector<std::unique_ptr<Active>>* admitted) {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    auto& sh = *it;
    absl::Status gone;
    if (sh->cancelled.load()) gone = absl::CancelledError("request cancelled");
    if (absl::Now() > sh->request.deadline) gone = absl::DeadlineExceededError("deadline passed while queued");
    if (!gone.ok()) {
      EngineEvent e;
      e.done = true;
      e.status = gone;
      sh->Push(std::move(e));
      it = waiting_.erase(it);
      continue;
    }
    ++it;
  }
  while (!waiting_.empty() && active_count_ < options_.parallel) {
    auto sh = waiting_.front();
    const uint64_t bytes = KvBytesFor(sh->request.context_size);
    if (options_.kv_budget_bytes > 0 && kv_in_use_ + bytes > options_.kv_budget_bytes) break;
    waiting_.pop_front();
    ++active_count_;
    kv_in_use_ += bytes;
    auto a = std::make_unique<Active>();
    a->shared = sh;
    a->kv_bytes = bytes;
    admitted->push_back(std::move(a));
  }
}

void Engine::SchedulerLoop() {
  while (true) {
    std::vector<std::unique_ptr<Active>> admitted;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stopping_ || !active_.empty() ||
               (!waiting_.empty() && active_count_ < options_.parallel) ||
               std::any_of(waiting_.begin(), waiting_.end(),
                           [](const auto& w) { return w->cancelled.load(); });
      });
      if (stopping_) {
        for (auto& sh : waiting_) {
          EngineEvent e;
          e.done = true;
          e.status = absl::UnavailableError("server shutting down");
          sh->Push(std::move(e));
        }
        waiting_.clear();
        break;
      }
      AdmitLocked(&admitted);
    }
    for (auto& a : admitted) {
      const EngineRequest& r = a->shared->request;
      a->admitted = absl::Now();
      a->kv = std::make_unique<KvCache>(model_.config(), r.context_size, step_tokens_);
      a->sampler = std::make_unique<Sampler>(r.options.sampling);
      if (!r.options.ignore_eos) a->stop_ids = stop_ids_;
      const int64_t room = r.context_size - static_cast<int64_t>(r.prompt.size());
      const int max_tokens = static_cast<int>(
          r.options.max_tokens > 0 ? std::min<int64_t>(r.options.max_tokens, room) : room);
      a->stop = std::make_unique<StopChecker>(r.options.stop, a->stop_ids, max_tokens);
      a->decoder = std::make_unique<StreamDecoder>(model_.tokenizer());
      active_.push_back(std::move(a));
    }
    if (!active_.empty()) Step();
  }
  for (auto& a : active_) Finish(*a, absl::UnavailableError("server shutting down"));
  active_.clear();
}

void Engine::Finish(Active& a, absl::Status status) {
  EngineEvent e;
  e.done = true;
  e.status = std::move(status);
  e.token_ids = std::move(a.pending_ids);
  if (!e.token_ids.empty()) e.time = a.last_token;
  e.finish = a.stop->finish_reason();
  if (e.status.ok()) {
    const bool stopped_by_string =
        e.finish == FinishReason::kStop && a.generated > 0 &&
        std::find(a.stop_ids.begin(), a.stop_ids.end(), a.next) == a.stop_ids.end();
    e.text = std::move(a.tail);
    if (!stopped_by_string) e.text += a.stop->Flush() + a.decoder->Flush();
  }
  EngineUsage& u = e.usage;
  u.prompt_tokens = static_cast<int>(a.shared->request.prompt.size());
  u.completion_tokens = a.generated;
  u.queue_seconds = absl::ToDoubleSeconds(a.admitted - a.shared->arrival);
  if (a.generated > 0) {
    u.prompt_seconds = absl::ToDoubleSeconds(a.first_token - a.admitted);
    u.ttft_seconds = absl::ToDoubleSeconds(a.first_token - a.shared->arrival);
    u.decode_seconds = absl::ToDoubleSeconds(a.last_token - a.first_token);
  }
  u.seed = a.sampler->seed();
  {
    std::lock_guard<std::mutex> lock(mu_);
    --active_count_;
    kv_in_use_ -= a.kv_bytes;
  }
  a.kv.reset();
  a.shared->Push(std::move(e));
  cv_.notify_all();
}

void Engine::Step() {
  // Drop cancelled and expired requests first: their slots free at once.
  const absl::Time now = absl::Now();
  for (auto& a : active_) {
    if (a->shared->cancelled.load()) {
      Finish(*a, absl::CancelledError("request cancelled"));
      a.reset();
    } else if (now > a->shared->request.deadline) {
      Finish(*a, absl::DeadlineExceededError("deadline exceeded"));
      a.reset();
    }
  }
  active_.erase(std::remove(active_.begin(), active_.end(), nullptr), active_.end());
  if (active_.empty()) return;

  // Decode tokens first (one per decoding request), then prefill chunks in
  // admission order with what is left of the step (capped while anyone
  // decodes, see EngineOptions::prefill_while_decoding).
  int budget = step_tokens_;
  std::vector<SequenceInput> inputs;
  std::vector<Active*> rows;
  bool decoding = false;
  for (auto& a : active_) {
    a->step_rows = 0;
    if (a->prefilled == a->shared->request.prompt.size()) {
      a->step_rows = 1;
      --budget;
      decoding = true;
    }
  }
  if (decoding && options_.prefill_while_decoding > 0) {
    budget = std::min(budget, options_.prefill_while_decoding);
  }
  for (auto& a : active_) {
    const auto& prompt = a->shared->request.prompt;
    if (a->prefilled < prompt.size() && budget > 0) {
      a->step_rows = static_cast<int>(std::min<size_t>(
          {prompt.size() - a->prefilled, static_cast<size_t>(budget),
           static_cast<size_t>(options_.prefill_chunk)}));
      budget -= a->step_rows;
    }
  }
  for (auto& a : active_) {
    if (a->step_rows == 0) continue;
    const auto& prompt = a->shared->request.prompt;
    absl::Span<const int32_t> toks =
        a->prefilled < prompt.size()
            ? absl::MakeConstSpan(prompt).subspan(a->prefilled, a->step_rows)
            : absl::MakeConstSpan(&a->next, 1);
    inputs.push_back({a->kv.get(), static_cast<int64_t>(a->history.size()), toks});
    rows.push_back(a.get());
  }
  std::vector<float>& logits = logits_;  // [rows, vocab], reused: ~5 MB at 8 rows of 151936
  const absl::Time t0 = absl::Now();
  absl::Status status = model_.forward().RunSequences(inputs, &logits);
  const absl::Time t1 = absl::Now();
  if (!status.ok()) {
    LOG(ERROR) << "forward step failed: " << status;
    for (auto& a : active_) Finish(*a, status);
    active_.clear();
    return;
  }
  const size_t vocab = model_.config().vocab_size;
  int generated = 0, decoded = 0;
  // Prompt work as it happens (it had been added when a request finished,
  // so a long generation's prompt was missing from the stats meanwhile).
  uint64_t prompt_tokens = 0;
  double prompt_seconds = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    Active& a = *rows[i];
    const auto& prompt = a.shared->request.prompt;
    const bool was_prefill = a.prefilled < prompt.size();
    a.history.insert(a.history.end(), inputs[i].tokens.begin(), inputs[i].tokens.end());
    if (was_prefill) {
      a.prefilled += a.step_rows;
      prompt_tokens += a.step_rows;
      if (a.prefilled < prompt.size()) continue;  // more prompt to go
    } else {
      ++decoded;
    }
    // Sample the next token from the logits of this row's last token.
    const int32_t id = a.sampler->Sample(
        absl::MakeConstSpan(logits).subspan(i * vocab, vocab), a.history);
    a.next = id;
    ++a.generated;
    ++generated;
    if (a.generated == 1) {
      a.first_token = t1;
      prompt_seconds += absl::ToDoubleSeconds(t1 - a.admitted);
    }
    a.last_token = t1;
    a.pending_ids.push_back(id);
    const bool is_stop_token =
        std::find(a.stop_ids.begin(), a.stop_ids.end(), id) != a.stop_ids.end();
    StopStep st = FeedGenerated(id, is_stop_token, *a.decoder, *a.stop);
    if (st.finish != FinishReason::kNone) {
      a.tail = std::move(st.text);  // sent with the final event
      a.step_rows = -1;             // finished
      continue;
    }
    if (!st.text.empty()) {
      EngineEvent e;
      e.text = std::move(st.text);
      e.token_ids = std::move(a.pending_ids);
      e.time = t1;
      a.pending_ids.clear();
      a.shared->Push(std::move(e));
    }
  }
  const CacheCounters cache = ReadCacheCounters(model_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    cache_ = cache;
    ++stats_.steps_total;
    stats_.tokens_predicted_total += generated;
    stats_.prompt_tokens_total += prompt_tokens;
    stats_.prompt_seconds_total += prompt_seconds;
    if (decoded > 0) stats_.decode_seconds_total += absl::ToDoubleSeconds(t1 - t0);
    recent_.push_back({t1, generated});
    while (!recent_.empty() && t1 - recent_.front().first > absl::Seconds(10)) recent_.pop_front();
  }
  for (auto& a : active_) {
    if (a->step_rows == -1) {
      Finish(*a, absl::OkStatus());
      a.reset();
    }
  }
  active_.erase(std::remove(active_.begin(), active_.end(), nullptr), active_.end());
}

}  // namespace st
