// The serving engine: continuous batching of many generation requests over
// one model. A bounded queue admits requests; one scheduler thread runs, in
// each step, the next decode token of every active request plus prefill
// chunks of newly admitted ones through ONE Forward::RunSequences call
// (experts see all tokens of the step together, attention runs per request
// over its own KV cache), then samples each request's next token with its own
// Sampler, applies its stop conditions and streams its text.
//
// Kernels are batch-invariant, so a request's tokens do not depend on what
// else ran in the same steps: with greedy sampling (or a fixed seed) its
// output equals its solo output and Session::Generate's.
//
// Memory: each active request owns a KvCache of its context size; the sum of
// their bytes() is kept within EngineOptions::kv_budget_bytes (a request that
// does not fit waits; one that could never fit is refused).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/expert_counters.h"
#include "model/model.h"
#include "model/session.h"
#include "model/stop_condition.h"

namespace st {

struct EngineOptions {
  int parallel = 4;              // requests generating at once (1..forward max_batch)
  int queue = 64;                // requests that may wait for a slot or KV room (>= 0)
  int64_t context_size = 4096;   // default and maximum per-request context
  uint64_t kv_budget_bytes = 0;  // sum of active requests' KV caches; 0 = unlimited
  // Prompt tokens per request per step (0 = the forward pass's max_batch).
  int prefill_chunk = 0;
  // Prompt tokens per step, over all requests, while any request is
  // decoding (0 = no cap but max_batch). Keeps the pause a new prompt puts
  // between a decoding request's tokens short, while prompts that arrive
  // at an idle engine (nobody waits for a token) go through in one step of
  // up to max_batch tokens.
  int prefill_while_decoding = 64;
  // Before the scheduler starts, run one throw-away prompt of this many
  // tokens (capped by the context and max_batch) and one decode step, so the
  // first request does not pay for first touches of the weights (page faults
  // of the mapped GGUF, an empty expert cache): on the 4b preset that more
  // than doubled the first request's time to first token. 0 = none.
  int warmup_tokens = 0;
};

struct EngineRequest {
  std::vector<int32_t> prompt;  // non-empty token ids
  GenerateOptions options;      // sampling, max_tokens, stop strings, ignore_eos
  int64_t context_size = 0;     // 0 = EngineOptions::context_size
  absl::Time deadline = absl::InfiniteFuture();
};

struct EngineUsage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  double queue_seconds = 0;     // arrival -> admission
  double prompt_seconds = 0;    // admission -> first token
  double ttft_seconds = 0;      // arrival -> first token
  double decode_seconds = 0;    // first token -> last token
  uint64_t seed = 0;
};

// One piece of a request's output. The last event has done = true and either
// status OK with finish set, or an error status (CANCELLED,
// DEADLINE_EXCEEDED, or the forward pass's error).
struct EngineEvent {
  std::string text;
  std::vector<int32_t> token_ids;
  bool done = false;
  FinishReason finish = FinishReason::kNone;
  absl::Status status;
  EngineUsage usage;  // set when done
  // When the forward step that produced token_ids ended (every event of one
  // step has the same time), so a consumer can time tokens without polling.
  // Unset (InfinitePast) on an event that carries no new token.
  absl::Time time = absl::InfinitePast();
};

struct EngineStats {
  uint64_t requests_total = 0, requests_rejected = 0;
  int requests_processing = 0, requests_deferred = 0;
  uint64_t prompt_tokens_total = 0, tokens_predicted_total = 0;
  double prompt_seconds_total = 0, decode_seconds_total = 0;
  uint64_t steps_total = 0;
  double recent_tokens_per_second = 0;
  uint64_t kv_cache_bytes = 0, kv_cache_budget_bytes = 0;
  double uptime_seconds = 0;
  CacheCounters cache;     // as of the end of the last step
  WorkerCounters workers;  // now
};

class Engine;

// The consumer's end of one request. Thread-safe.
class RequestStream {
 public:
  enum class Poll { kEvent, kTimeout, kEnded };
  // Dropping a stream before its end cancels its request (the engine sees
  // it at its next step): a handler that throws had left its generation
  // holding a slot and KV cache until EOS or max_tokens.
  ~RequestStream();
  RequestStream(RequestStream&&) = default;
  RequestStream& operator=(RequestStream&&) = delete;
  RequestStream(const RequestStream&) = delete;
  RequestStream& operator=(const RequestStream&) = delete;
  // Waits up to `timeout` for the next event. kEnded once the final event
  // has been returned.
  Poll Next(EngineEvent* event, absl::Duration timeout = absl::InfiniteDuration());
  // Stops the request at the next step (its final event has status
  // CANCELLED) and frees its slot and KV cache. Idempotent. Call only while
  // the engine lives.
  void Cancel();

 private:
  friend class Engine;
  struct Shared;
  explicit RequestStream(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
  std::shared_ptr<Shared> shared_;
};

// Thread-safe. Owns the scheduler thread, which is the only user of the
// model's forward pass while the engine lives.
class Engine {
 public:
  // `model` must outlive the engine.
  Engine(Model& model, const EngineOptions& options);
  ~Engine();  // Shutdown()
  // Ends every request (final status UNAVAILABLE) and joins the scheduler;
  // later Submits are UNAVAILABLE. Streams stay valid until destruction.
  void Shutdown();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and enqueues. INVALID_ARGUMENT for bad input (empty prompt,
  // ids out of range, prompt that does not fit its context, bad sampling
  // parameters, context over the server's); OUT_OF_RANGE when the
  // request's KV cache alone exceeds the budget; RESOURCE_EXHAUSTED when it
  // would be one more than `queue` requests waiting (for a slot or for KV
  // room).
  absl::StatusOr<std::unique_ptr<RequestStream>> Submit(EngineRequest request);
  // Submit for several requests at once: all are validated first, then
  // enqueued together under one lock (all or none: RESOURCE_EXHAUSTED when
  // they do not all fit), so the scheduler admits them in the same step
  // when slots are free. Benchmarks use it to start N streams together.
  absl::StatusOr<std::vector<std::unique_ptr<RequestStream>>> SubmitAll(
      std::vector<EngineRequest> requests);

  EngineStats stats() const;
  const EngineOptions& options() const { return options_; }
  // Bytes of the KV cache a request of this context size gets.
  uint64_t KvBytesFor(int64_t context_size) const;
  Model& model() { return model_; }

 private:
  // Submit's checks of one request (fills in its default context size).
  absl::Status Validate(EngineRequest& request) const;
  friend class RequestStream;
  struct Active;
  void SchedulerLoop();
  // Admits waiting requests that fit; drops cancelled/expired waiting ones.
  void AdmitLocked(std::vector<std::unique_ptr<Active>>* admitted);
  void WarmUp();
  void Step();
  void Finish(Active& a, absl::Status status);

  Model& model_;
  EngineOptions options_;
  std::vector<int32_t> stop_ids_;
  int step_tokens_;  // max tokens per forward step
  absl::Time started_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<std::shared_ptr<RequestStream::Shared>> waiting_;
  EngineStats stats_;  // counters; gauges filled in by stats()
  uint64_t kv_in_use_ = 0;
  int active_count_ = 0;
  std::deque<std::pair<absl::Time, int>> recent_;  // (step end, tokens generated)
  CacheCounters cache_;  // copied on the scheduler thread after each step

  std::vector<std::unique_ptr<Active>> active_;  // scheduler thread only
  std::vector<float> logits_;                    // scheduler thread only
  std::thread scheduler_;
};

}  // namespace st
