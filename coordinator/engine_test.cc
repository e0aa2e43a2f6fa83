// The continuous-batching engine: concurrent requests equal their solo
// outputs, queue limits, cancellation, deadlines, KV budget, bad input.
#include "coordinator/engine.h"

#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "model/session.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

struct Collected {
  std::string text;
  std::vector<int32_t> ids;
  EngineEvent last;
  int events = 0;
};

Collected Drain(RequestStream& s) {
  Collected c;
  EngineEvent e;
  while (s.Next(&e) == RequestStream::Poll::kEvent) {
    ++c.events;
    c.text += e.text;
    c.ids.insert(c.ids.end(), e.token_ids.begin(), e.token_ids.end());
    c.last = e;
  }
  return c;
}

std::vector<int32_t> Prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(97 + (i * 5 + salt * 3) % 26);  // letters
  return p;
}

GenerateOptions Greedy(int max_tokens) {
  GenerateOptions o;
  o.sampling.temperature = 0;
  o.max_tokens = max_tokens;
  o.ignore_eos = true;
  return o;
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto path = testing::SynthModel(dir_.path(), "tiny-swa", DType::kQ8_0);
    ASSERT_TRUE(path.ok()) << path.status();
    auto model = Model::Load(*path, ModelOptions{.threads = 2, .max_batch = 16});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }
  testing::TempDir dir_;
  std::unique_ptr<Model> model_;
};

TEST_F(EngineTest, WarmUpChangesNeitherOutputsNorStatistics) {
  Session solo(*model_, 64);
  auto expected = solo.Generate(Prompt(7, 1), Greedy(12));
  ASSERT_TRUE(expected.ok()) << expected.status();
  const uint64_t routed = model_->forward().routed_tokens();
  Engine engine(*model_, EngineOptions{.parallel = 2, .context_size = 64, .warmup_tokens = 40});
  // 16 prompt tokens (capped by max_batch) and one decode token went through the model.
  EXPECT_EQ(model_->forward().routed_tokens() - routed, 17u);
  const EngineStats before = engine.stats();
  EXPECT_EQ(before.requests_total, 0u);
  EXPECT_EQ(before.steps_total, 0u);
  EXPECT_EQ(before.tokens_predicted_total, 0u);
  EXPECT_EQ(before.kv_cache_bytes, 0u);
  auto s = engine.Submit(EngineRequest{.prompt = Prompt(7, 1), .options = Greedy(12)});
  ASSERT_TRUE(s.ok()) << s.status();
  Collected c = Drain(**s);
  ASSERT_TRUE(c.last.status.ok()) << c.last.status;
  EXPECT_EQ(c.ids, expected->generated_ids);
}

TEST_F(EngineTest, EightConcurrentGreedyRequestsEqualTheirSoloOutputs) {
  std::vector<GenerateResult> solo;
  for (int i = 0; i < 8; ++i) {
    Session s(*model_, 128);
    auto r = s.Generate(Prompt(3 + 4 * i, i), Greedy(20 + i));
    ASSERT_TRUE(r.ok()) << r.status();
    solo.push_back(*r);
  }
  Engine engine(*model_, EngineOptions{.parallel = 8, .queue = 8, .context_size = 128,
                                       .prefill_chunk = 5});
  std::vector<std::unique_ptr<RequestStream>> streams;
  for (int i = 0; i < 8; ++i) {
    auto s = engine.Submit(EngineRequest{.prompt = Prompt(3 + 4 * i, i), .options = Greedy(20 + i)});
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(std::move(*s));
  }
  for (int i = 0; i < 8; ++i) {
    Collected c = Drain(*streams[i]);
    ASSERT_TRUE(c.last.done);
    ASSERT_TRUE(c.last.status.ok()) << c.last.status;
    EXPECT_EQ(c.ids, solo[i].generated_ids) << "request " << i;
    EXPECT_EQ(c.text, solo[i].text) << "request " << i;
    EXPECT_EQ(c.last.finish, FinishReason::kLength);
    EXPECT_EQ(c.last.usage.completion_tokens, 20 + i);
    EXPECT_EQ(c.last.usage.prompt_tokens, 3 + 4 * i);
    EXPECT_GT(c.events, 1);
  }
  const EngineStats st = engine.stats();
  EXPECT_EQ(st.requests_total, 8u);
  EXPECT_EQ(st.tokens_predicted_total, static_cast<uint64_t>(8 * 20 + 28));
  EXPECT_EQ(st.requests_processing, 0);
  EXPECT_EQ(st.kv_cache_bytes, 0u);
  // Within its first 10 s, recent tokens/s is over the time since start
  // (it had been over 10 s from the first moment).
  if (st.uptime_seconds < 9) {
    EXPECT_NEAR(st.recent_tokens_per_second * st.uptime_seconds,
                static_cast<double>(st.tokens_predicted_total), 1.0);
  }
  // Batching happened: fewer steps than generated tokens. Not tokens / 2:
  // under a loaded ctest -j2 the submitting thread can be preempted between
  // Submits while the engine runs the first requests alone (a tiny model's
  // step is much shorter than a time slice).
  EXPECT_LT(st.steps_total, st.tokens_predicted_total * 3 / 4);
}

TEST_F(EngineTest, SeededSamplingAndStopStringsMatchSession) {
  GenerateOptions o;
  o.sampling.seed = 42;
  o.sampling.temperature = 1.0f;
  o.max_tokens = 40;
  o.ignore_eos = true;
  Session s(*model_, 128);
  auto solo = s.Generate(Prompt(6, 1), o);
  ASSERT_TRUE(solo.ok());
  ASSERT_GE(solo->text.size(), 6u);
  o.stop = {solo->text.substr(3, 2)};  // a stop string the output contains
  Session s2(*model_, 128);
  auto stopped = s2.Generate(Prompt(6, 1), o);
  ASSERT_TRUE(stopped.ok());
  Engine engine(*model_, EngineOptions{.parallel = 2, .context_size = 128});
  auto a = engine.Submit(EngineRequest{.prompt = Prompt(6, 1), .options = o});
  ASSERT_TRUE(a.ok());
  Collected c = Drain(**a);
  EXPECT_EQ(c.text, stopped->text);
  EXPECT_EQ(c.ids, stopped->generated_ids);
  EXPECT_EQ(c.last.finish, FinishReason::kStop);
  EXPECT_EQ(c.last.usage.seed, 42u);
}

TEST_F(EngineTest, FullQueueIsResourceExhausted) {
  Engine engine(*model_, EngineOptions{.parallel = 1, .queue = 1, .context_size = 256});
  auto a = engine.Submit(EngineRequest{.prompt = Prompt(4, 0), .options = Greedy(200)});
  auto b = engine.Submit(EngineRequest{.prompt = Prompt(4, 1), .options = Greedy(200)});
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  auto c = engine.Submit(EngineRequest{.prompt = Prompt(4, 2), .options = Greedy(4)});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted) << c.status();
  EXPECT_EQ(engine.stats().requests_rejected, 1u);
  (*a)->Cancel();
  (*b)->Cancel();
  EXPECT_EQ(Drain(**a).last.status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(Drain(**b).last.status.code(), absl::StatusCode::kCancelled);
}

// SubmitAll enqueues its requests together: with free slots they are
// admitted in the same step and decode in lockstep, however late the
// submitting thread runs again; a batch that does not fit is refused whole.
TEST_F(EngineTest, SubmitAllStartsTogetherAndIsAllOrNothing) {
  Engine engine(*model_, EngineOptions{.parallel = 2, .queue = 0, .context_size = 128});
  model_->forward().ResetStats();
  std::vector<EngineRequest> two;
  two.push_back(EngineRequest{.prompt = Prompt(6, 0), .options = Greedy(24)});
  two.push_back(EngineRequest{.prompt = Prompt(6, 1), .options = Greedy(24)});
  auto streams = engine.SubmitAll(std::move(two));
  ASSERT_TRUE(streams.ok()) << streams.status();
  ASSERT_EQ(streams->size(), 2u);
  for (auto& s : *streams) EXPECT_EQ(Drain(*s).ids.size(), 24u);
  // Both prompts in the first step, then 23 steps of one token each.
  EXPECT_EQ(model_->forward().decode_steps(2).steps, 23u);
  EXPECT_EQ(model_->forward().decode_steps(1).steps, 0u);

  // Three requests for two slots and no queue: none is taken.
  std::vector<EngineRequest> three;
  for (int i = 0; i < 3; ++i) three.push_back(EngineRequest{.prompt = Prompt(4, i), .options = Greedy(4)});
  auto refused = engine.SubmitAll(std::move(three));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_EQ(engine.stats().requests_rejected, 3u);
  EXPECT_EQ(engine.stats().requests_total, 2u);
  // A bad request names its index and enqueues nothing.
  std::vector<EngineRequest> bad;
  bad.push_back(EngineRequest{.prompt = Prompt(4, 0), .options = Greedy(4)});
  bad.push_back(EngineRequest{.prompt = {}, .options = Greedy(4)});
  auto invalid = engine.SubmitAll(std::move(bad));
  EXPECT_EQ(invalid.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(invalid.status().message().find("request 1"), std::string::npos) << invalid.status();
  EXPECT_EQ(engine.stats().requests_total, 2u);
}

// Prompts that arrive at an idle engine go through in one step of up to
// max_batch tokens; while anyone decodes, a step takes at most
// prefill_while_decoding prompt tokens. Outputs are the same either way.
TEST_F(EngineTest, PromptTokensPerStepAreCappedWhileOthersDecode) {
  // A and B: 4-token prompts, 30 tokens each; C: a 14-token prompt, 1 token.
  auto requests = [] {
    std::vector<EngineRequest> r;
    r.push_back(EngineRequest{.prompt = Prompt(4, 0), .options = Greedy(30)});
    r.push_back(EngineRequest{.prompt = Prompt(4, 1), .options = Greedy(30)});
    r.push_back(EngineRequest{.prompt = Prompt(14, 2), .options = Greedy(1)});
    return r;
  };
  std::vector<std::vector<int32_t>> solo;
  for (EngineRequest& r : requests()) {
    Session s(*model_, 128);
    auto g = s.Generate(r.prompt, r.options);
    ASSERT_TRUE(g.ok()) << g.status();
    solo.push_back(g->generated_ids);
  }
  // max_batch is 16. Step 1 (nobody decodes yet): A 4 + B 4 + C 8. Then A
  // and B decode, and C's last 6 prompt tokens take 6 / cap steps beside
  // them; A and B decode alone in the steps after that, up to step 30.
  for (const auto& [cap, alone] : {std::pair{2, 30 - 1 - 3}, std::pair{0, 30 - 1 - 1}}) {
    SCOPED_TRACE(cap);
    model_->forward().ResetStats();
    Engine engine(*model_, EngineOptions{.parallel = 3, .queue = 0, .context_size = 128,
                                         .prefill_while_decoding = cap});
    auto streams = engine.SubmitAll(requests());
    ASSERT_TRUE(streams.ok()) << streams.status();
    for (size_t i = 0; i < streams->size(); ++i) {
      Collected c = Drain(*(*streams)[i]);
      ASSERT_TRUE(c.last.status.ok()) << c.last.status;
      EXPECT_EQ(c.ids, solo[i]) << "request " << i;
    }
    EXPECT_EQ(model_->forward().decode_steps(2).steps, static_cast<uint64_t>(alone));
    EXPECT_EQ(engine.stats().steps_total, 30u);
  }
}

// Token events carry the end time of the step that made them, so a consumer
// that reads a stream late (bench-serve blocks on one stream while the others
// queue) still sees when each token was made.
TEST_F(EngineTest, TokenEventsCarryTheirStepTime) {
  Engine engine(*model_, EngineOptions{.parallel = 2, .queue = 0, .context_size = 128});
  std::vector<EngineRequest> two;
  two.push_back(EngineRequest{.prompt = Prompt(6, 0), .options = Greedy(24)});
  two.push_back(EngineRequest{.prompt = Prompt(6, 1), .options = Greedy(24)});
  const absl::Time before = absl::Now();
  auto streams = engine.SubmitAll(std::move(two));
  ASSERT_TRUE(streams.ok()) << streams.status();
  std::vector<std::vector<absl::Time>> times(2);
  std::vector<EngineUsage> usage(2);
  for (int i = 0; i < 2; ++i) {  // stream 1 queues its events while stream 0 is read
    EngineEvent e;
    int tokens = 0;
    while ((*streams)[i]->Next(&e) == RequestStream::Poll::kEvent) {
      if (!e.token_ids.empty()) {
        times[i].push_back(e.time);
        tokens += static_cast<int>(e.token_ids.size());
      } else {
        EXPECT_EQ(e.time, absl::InfinitePast());
      }
      if (e.done) usage[i] = e.usage;
    }
    EXPECT_EQ(tokens, 24);
  }
  const absl::Time after = absl::Now();
  for (int i = 0; i < 2; ++i) {
    ASSERT_FALSE(times[i].empty());
    for (size_t k = 0; k < times[i].size(); ++k) {
      EXPECT_GE(times[i][k], before);
      EXPECT_LE(times[i][k], after);
      if (k > 0) {
        EXPECT_GE(times[i][k], times[i][k - 1]);
      }
    }
    // The span of the event times is the decode time the engine reports
    // (less if the first token's text was held back): not the time of reading.
    const double span = absl::ToDoubleSeconds(times[i].back() - times[i].front());
    EXPECT_GT(span, 0.0);
    EXPECT_LE(span, usage[i].decode_seconds + 1e-6);
  }
}

TEST_F(EngineTest, CancellingMidStreamFreesTheSlot) {
  Engine engine(*model_, EngineOptions{.parallel = 1, .queue = 4, .context_size = 256});
  auto a = engine.Submit(EngineRequest{.prompt = Prompt(4, 0), .options = Greedy(250)});
  ASSERT_TRUE(a.ok());
  EngineEvent e;
  ASSERT_EQ((*a)->Next(&e), RequestStream::Poll::kEvent);  // generating
  auto b = engine.Submit(EngineRequest{.prompt = Prompt(4, 1), .options = Greedy(5)});
  ASSERT_TRUE(b.ok());
  (*a)->Cancel();
  Collected ca = Drain(**a);
  EXPECT_EQ(ca.last.status.code(), absl::StatusCode::kCancelled);
  EXPECT_LT(ca.last.usage.completion_tokens, 250);
  Collected cb = Drain(**b);
  EXPECT_TRUE(cb.last.status.ok()) << cb.last.status;
  EXPECT_EQ(cb.ids.size(), 5u);
  EXPECT_EQ(engine.stats().requests_processing, 0);
  EXPECT_EQ(engine.stats().kv_cache_bytes, 0u);
}

// A stream dropped before its end (a handler that threw) cancels its
// request: the slot and KV cache are free again within a step or so, not
// after 4000 tokens.
TEST_F(EngineTest, DroppingAStreamCancelsItsRequest) {
  Engine engine(*model_, EngineOptions{.parallel = 1, .queue = 4, .context_size = 4096});
  auto a = engine.Submit(EngineRequest{.prompt = Prompt(4, 0), .options = Greedy(4000)});
  ASSERT_TRUE(a.ok());
  EngineEvent e;
  ASSERT_EQ((*a)->Next(&e), RequestStream::Poll::kEvent);  // generating
  a->reset();
  EngineStats st = engine.stats();
  for (int i = 0; i < 2000 && st.requests_processing > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    st = engine.stats();
  }
  EXPECT_EQ(st.requests_processing, 0);
  EXPECT_LT(st.tokens_predicted_total, 3000u);
  // The next request is served.
  auto b = engine.Submit(EngineRequest{.prompt = Prompt(4, 1), .options = Greedy(5)});
  ASSERT_TRUE(b.ok());
  Collected cb = Drain(**b);
  EXPECT_TRUE(cb.last.status.ok()) << cb.last.status;
  EXPECT_EQ(cb.ids.size(), 5u);
}

// A request's prompt counts in the stats once it is processed, not when
// the request ends (a long generation's prompt had been missing).
TEST_F(EngineTest, PromptStatsCountBeforeTheRequestEnds) {
  Engine engine(*model_, EngineOptions{.parallel = 1, .queue = 4, .context_size = 256});
  auto a = engine.Submit(EngineRequest{.prompt = Prompt(9, 0), .options = Greedy(250)});
  ASSERT_TRUE(a.ok());
  EngineEvent e;
  ASSERT_EQ((*a)->Next(&e), RequestStream::Poll::kEvent);  // generating
  // The stats follow at the end of the step that sampled the first token.
  EngineStats during = engine.stats();
  for (int i = 0; i < 2000 && during.prompt_tokens_total == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    during = engine.stats();
  }
  EXPECT_EQ(during.prompt_tokens_total, 9u);
  EXPECT_GT(during.prompt_seconds_total, 0);
  EXPECT_EQ(during.requests_processing, 1);  // counted while it still runs
  (*a)->Cancel();
  Drain(**a);
  EXPECT_EQ(engine.stats().prompt_tokens_total, 9u);  // not twice
}

TEST_F(EngineTest, DeadlineStopsGeneration) {
  Engine engine(*model_, EngineOptions{.parallel = 1, .context_size = 4096});
  auto a = engine.Submit(EngineRequest{.prompt = Prompt(4, 0), .options = Greedy(4000),
                                       .deadline = absl::Now() + absl::Milliseconds(50)});
  ASSERT_TRUE(a.ok());
  Collected c = Drain(**a);
  EXPECT_EQ(c.last.status.code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(EngineTest, KvBudgetSerializesAndRefuses) {
  const uint64_t one = KvCache(model_->config(), 64, model_->forward().max_batch()).bytes();
  const uint64_t big_bytes =
      KvCache(model_->config(), 1024, model_->forward().max_batch()).bytes();
  ASSERT_GT(big_bytes, one + one / 2);
  Engine engine(*model_, EngineOptions{.parallel = 4, .queue = 4, .context_size = 1024,
                                       .kv_budget_bytes = one + one / 2});
  auto big = engine.Submit(EngineRequest{.prompt = Prompt(4, 0), .options = Greedy(4),
                                         .context_size = 1024});
  // Never admissible: OUT_OF_RANGE, not the RESOURCE_EXHAUSTED clients retry.
  EXPECT_EQ(big.status().code(), absl::StatusCode::kOutOfRange) << big.status();
  // The engine sizes requests by arithmetic, as the caches it builds come out.
  EXPECT_EQ(engine.KvBytesFor(1024), big_bytes);
  EXPECT_EQ(engine.KvBytesFor(64), one);
  auto a = engine.Submit(EngineRequest{.prompt = Prompt(4, 0), .options = Greedy(30),
                                       .context_size = 64});
  auto b = engine.Submit(EngineRequest{.prompt = Prompt(4, 1), .options = Greedy(30),
                                       .context_size = 64});
  ASSERT_TRUE(a.ok() && b.ok());
  EngineEvent e;
  ASSERT_EQ((*a)->Next(&e), RequestStream::Poll::kEvent);
  EngineStats st = engine.stats();
  EXPECT_LE(st.kv_cache_bytes, one + one / 2);
  // b waits for a's memory: never both at once. (Not == 1: on a busy host
  // this thread can be descheduled until a has finished and b not yet been
  // admitted, and once was.)
  EXPECT_LE(st.requests_processing, 1);
  EXPECT_TRUE(Drain(**a).last.status.ok());
  EXPECT_TRUE(Drain(**b).last.status.ok());
}

// --queue bounds the requests that wait, whether for a slot or for KV
// room: with slots free but the budget full, a request beyond the queue is
// refused (it used to be taken to wait, counted against the free slots).
TEST_F(EngineTest, KvBudgetFullWithSlotsFreeStillBoundsTheQueue) {
  const uint64_t one = KvCache(model_->config(), 256, model_->forward().max_batch()).bytes();
  Engine engine(*model_, EngineOptions{.parallel = 4, .queue = 1, .context_size = 256,
                                       .kv_budget_bytes = one + one / 2});
  auto a = engine.Submit(EngineRequest{.prompt = Prompt(4, 0), .options = Greedy(200)});
  auto b = engine.Submit(EngineRequest{.prompt = Prompt(4, 1), .options = Greedy(200)});
  ASSERT_TRUE(a.ok() && b.ok());  // one holds the KV budget, the other waits
  auto c = engine.Submit(EngineRequest{.prompt = Prompt(4, 2), .options = Greedy(4)});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted) << c.status();
  EXPECT_EQ(engine.stats().requests_rejected, 1u);
  (*a)->Cancel();
  (*b)->Cancel();
  Drain(**a);
  Drain(**b);
}

TEST_F(EngineTest, BadInputIsInvalidArgument) {
  Engine engine(*model_, EngineOptions{.parallel = 1, .context_size = 32});
  auto code = [&](EngineRequest r) { return engine.Submit(std::move(r)).status().code(); };
  EXPECT_EQ(code({.prompt = {}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.prompt = Prompt(32, 0)}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.prompt = {model_->config().vocab_size}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.prompt = {-1}}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.prompt = {1}, .context_size = 64}), absl::StatusCode::kInvalidArgument);
  EngineRequest bad_temp{.prompt = {1}};
  bad_temp.options.sampling.temperature = -1;
  EXPECT_EQ(code(bad_temp), absl::StatusCode::kInvalidArgument);
  // Still serving.
  auto ok = engine.Submit(EngineRequest{.prompt = {1, 2}, .options = Greedy(3)});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(Drain(**ok).ids.size(), 3u);
}

}  // namespace
}  // namespace st
