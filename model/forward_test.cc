// Decode step by step with the KV cache must give the logits of one prefill
// of the whole sequence, for global and sliding-window (ring) layers alike.
#include <cmath>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "model/model.h"
#include "model/session.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

std::vector<int32_t> Tokens(int n, int vocab) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 7919 + 13) % vocab);
  return t;
}

// Max |a - b| relative to max(1, max|a|).
double RelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 1.0, d = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, static_cast<double>(std::abs(a[i])));
    d = std::max(d, static_cast<double>(std::abs(a[i] - b[i])));
  }
  return d / m;
}

// Param: (weight type, KV cache type).
class DecodeMatchesPrefill : public ::testing::TestWithParam<std::tuple<DType, DType>> {};

TEST_P(DecodeMatchesPrefill, TinySwa) {
  testing::TempDir dir;
  const auto [type, kv_type] = GetParam();
  auto path = testing::SynthModel(dir.path(), "tiny-swa", type);
  ASSERT_TRUE(path.ok()) << path.status();
  auto prefill_model =
      Model::Load(*path, ModelOptions{.threads = 2, .max_batch = 64, .kv_type = kv_type});
  auto small_batch_model =
      Model::Load(*path, ModelOptions{.threads = 1, .max_batch = 3, .kv_type = kv_type});
  ASSERT_TRUE(prefill_model.ok()) << prefill_model.status();
  ASSERT_TRUE(small_batch_model.ok()) << small_batch_model.status();
  const int vocab = (*prefill_model)->config().vocab_size;
  const std::vector<int32_t> tokens = Tokens(30, vocab);  // > window 8

  Session prefill(**prefill_model, 64);
  auto all = prefill.Evaluate(tokens, /*all_logits=*/true);
  ASSERT_TRUE(all.ok()) << all.status();

  // Both sessions use max_batch 3, so their sliding-window rings hold only
  // window + 2 = 10 slots and wrap several times over 30 tokens.
  Session decode(**small_batch_model, 64);
  Session chunked(**small_batch_model, 64);
  auto chunked_all = chunked.Evaluate(tokens, true);
  ASSERT_TRUE(chunked_all.ok());
  EXPECT_LT(RelDiff(*all, *chunked_all), 1e-5) << "batches of 3 differ from one prefill";

  for (size_t t = 0; t < tokens.size(); ++t) {
    auto step = decode.Evaluate({tokens[t]}, false);
    ASSERT_TRUE(step.ok()) << step.status();
    std::vector<float> expected(all->begin() + t * vocab, all->begin() + (t + 1) * vocab);
    EXPECT_LT(RelDiff(expected, *step), 1e-5) << "position " << t;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, DecodeMatchesPrefill,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kQ8_0,
                                                              DType::kQ4_0),
                                            ::testing::Values(DType::kF16, DType::kBF16,
                                                              DType::kF32)));

TEST(ForwardTest, RejectsOutOfRangeTokensAndContextOverflow) {
  testing::TempDir dir;
  auto path = testing::SynthModel(dir.path(), "tiny", DType::kF32);
  ASSERT_TRUE(path.ok()) << path.status();
  auto model = Model::Load(*path, ModelOptions{.threads = 1});
  ASSERT_TRUE(model.ok()) << model.status();
  Session s(**model, 8);
  const int vocab = (*model)->config().vocab_size;
  auto bad = s.Evaluate({vocab}, false);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("outside the vocabulary"), std::string::npos);
  auto too_long = s.Evaluate(std::vector<int32_t>(9, 1), false);
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace st
