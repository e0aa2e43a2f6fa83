// Session: the generate loop (length, context, stop strings), KV prefix reuse,
// and rollbacks that must never read a sliding-window ring slot that a
// rolled-back position overwrote.
#include "model/session.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/model.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

GenerateOptions Greedy(int max_tokens) {
  GenerateOptions o;
  o.sampling.temperature = 0;
  o.max_tokens = max_tokens;
  o.ignore_eos = true;
  return o;
}

std::vector<int32_t> Prompt(int n, int salt = 0) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(40 + (i * 37 + salt) % 200);
  return p;
}

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto path = testing::SynthModel(dir_.path(), "tiny-swa", DType::kQ8_0);
    ASSERT_TRUE(path.ok()) << path.status();
    auto m = Model::Load(*path, ModelOptions{.threads = 2, .max_batch = 4});
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
  }
  // Greedy continuation of `prompt` by a fresh session.
  std::vector<int32_t> Fresh(const std::vector<int32_t>& prompt, int n) {
    Session s(*model_, 128);
    auto r = s.Generate(prompt, Greedy(n));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->generated_ids : std::vector<int32_t>{};
  }
  testing::TempDir dir_;
  std::unique_ptr<Model> model_;
};

TEST_F(SessionTest, StopsAtMaxTokensAndAtFullContext) {
  Session s(*model_, 16);
  auto r = s.Generate(Prompt(4), Greedy(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->generated_ids.size(), 5u);
  EXPECT_EQ(r->finish, FinishReason::kLength);
  // max_tokens <= 0: until the context (16) is full.
  Session t(*model_, 16);
  auto full = t.Generate(Prompt(4), Greedy(0));
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->generated_ids.size(), 12u);
  EXPECT_EQ(full->finish, FinishReason::kLength);
  // A prompt that fills the context is refused with a clear error.
  auto too_long = t.Generate(Prompt(16), Greedy(1));
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SessionTest, StopStringEndsTextBeforeIt) {
  Session s(*model_, 128);
  auto r = s.Generate(Prompt(6), Greedy(24));
  ASSERT_TRUE(r.ok()) << r.status();
  // Pick an ASCII letter or digit that appears after the first character.
  size_t at = std::string::npos;
  for (size_t i = 1; i < r->text.size() && at == std::string::npos; ++i) {
    if (std::isalnum(static_cast<unsigned char>(r->text[i]))) at = i;
  }
  ASSERT_NE(at, std::string::npos) << "no ASCII character in: " << r->text;
  const std::string stop(1, r->text[at]);
  const size_t first = r->text.find(stop);
  GenerateOptions o = Greedy(24);
  o.stop = {stop};
  Session t(*model_, 128);
  auto stopped = t.Generate(Prompt(6), o);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(stopped->finish, FinishReason::kStop);
  EXPECT_EQ(stopped->text, r->text.substr(0, first));
}

TEST_F(SessionTest, ReusesCachedPrefixAndMatchesFreshSession) {
  const std::vector<int32_t> a = Prompt(10);
  Session s(*model_, 128);
  auto first = s.Generate(a, Greedy(6));
  ASSERT_TRUE(first.ok());
  std::vector<int32_t> b = a;
  b.insert(b.end(), first->generated_ids.begin(), first->generated_ids.end());
  b.push_back(77);
  auto second = s.Generate(b, Greedy(6));
  ASSERT_TRUE(second.ok());
  // Cached: the prompt and all generated tokens but the last (never evaluated).
  EXPECT_EQ(second->prompt_tokens_evaluated, 2);
  EXPECT_EQ(second->generated_ids, Fresh(b, 6));
}

// Rolling back repeatedly (as chat edits or retries do) must give exactly the
// tokens a fresh session gives, although the window-8 rings (capacity
// 8 + 4 - 1 = 11) have been written past the rolled-back positions.
TEST_F(SessionTest, RepeatedRollbacksMatchFreshSession) {
  const std::vector<int32_t> base = Prompt(24, 5);
  for (int n_gen : {1, 3}) {
    Session s(*model_, 128);
    for (int keep : {20, 18, 16, 14, 9, 12, 3}) {
      std::vector<int32_t> p(base.begin(), base.begin() + keep);
      p.push_back(100 + keep);
      auto r = s.Generate(p, Greedy(n_gen));
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->generated_ids, Fresh(p, n_gen))
          << "after rolling back to " << keep << " generating " << n_gen;
    }
  }
}

}  // namespace
}  // namespace st
