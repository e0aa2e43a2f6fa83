// Forward::RunSequences (continuous batching): several sequences in one step
// must give, bit for bit, the logits each gets when run alone.
#include <vector>

#include "gtest/gtest.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

std::vector<int32_t> Tokens(int n, int vocab, int salt) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 7919 + 13 + salt * 101) % vocab);
  return t;
}

class RunSequencesTest : public ::testing::TestWithParam<DType> {};

TEST_P(RunSequencesTest, EachSequenceEqualsItsSoloRun) {
  testing::TempDir dir;
  auto path = testing::SynthModel(dir.path(), "tiny-swa", GetParam());
  ASSERT_TRUE(path.ok()) << path.status();
  auto model = Model::Load(*path, ModelOptions{.threads = 2, .max_batch = 16});
  ASSERT_TRUE(model.ok()) << model.status();
  Forward& fwd = (*model)->forward();
  const ModelConfig& c = (*model)->config();
  const int vocab = c.vocab_size;
  // Three sequences of different lengths (> the sliding window of 8).
  const std::vector<std::vector<int32_t>> seqs = {Tokens(20, vocab, 0), Tokens(13, vocab, 1),
                                                  Tokens(17, vocab, 2)};
  // Solo: one token at a time, logits after every token.
  std::vector<std::vector<std::vector<float>>> solo(seqs.size());
  for (size_t s = 0; s < seqs.size(); ++s) {
    KvCache kv(c, 64, fwd.max_batch());
    for (size_t i = 0; i < seqs[s].size(); ++i) {
      std::vector<float> logits;
      ASSERT_TRUE(fwd.Run(kv, i, {seqs[s][i]}, false, &logits).ok());
      solo[s].push_back(logits);
    }
  }
  // Batched: each step takes a chunk of a different size from each sequence
  // (prefill chunks mixed with single decode tokens), all in one call.
  std::vector<KvCache> kvs;
  for (size_t s = 0; s < seqs.size(); ++s) kvs.emplace_back(c, 64, fwd.max_batch());
  std::vector<size_t> done(seqs.size(), 0);
  for (int step = 0;; ++step) {
    std::vector<SequenceInput> in;
    std::vector<size_t> which, ends;
    for (size_t s = 0; s < seqs.size(); ++s) {
      if (done[s] == seqs[s].size()) continue;
      const size_t chunk = std::min<size_t>(seqs[s].size() - done[s], 1 + (step + s) % 4);
      in.push_back({&kvs[s], static_cast<int64_t>(done[s]),
                    absl::MakeConstSpan(seqs[s]).subspan(done[s], chunk)});
      which.push_back(s);
      done[s] += chunk;
      ends.push_back(done[s]);
    }
    if (in.empty()) break;
    std::vector<float> logits;
    ASSERT_TRUE(fwd.RunSequences(in, &logits).ok());
    ASSERT_EQ(logits.size(), in.size() * vocab);
    for (size_t i = 0; i < in.size(); ++i) {
      const std::vector<float>& want = solo[which[i]][ends[i] - 1];
      const std::vector<float> got(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
      ASSERT_EQ(got, want) << "sequence " << which[i] << " at position " << ends[i] - 1;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, RunSequencesTest,
                         ::testing::Values(DType::kF32, DType::kQ8_0, DType::kQ4_0));

TEST(RunSequencesErrors, RejectsOversizeStepsAndBadSequences) {
  testing::TempDir dir;
  auto path = testing::SynthModel(dir.path(), "tiny", DType::kF32);
  ASSERT_TRUE(path.ok()) << path.status();
  auto model = Model::Load(*path, ModelOptions{.threads = 1, .max_batch = 4});
  ASSERT_TRUE(model.ok()) << model.status();
  Forward& fwd = (*model)->forward();
  KvCache a((*model)->config(), 8, 4), b((*model)->config(), 8, 4);
  const std::vector<int32_t> three = {1, 2, 3};
  std::vector<float> logits;
  EXPECT_EQ(fwd.RunSequences({}, &logits).code(), absl::StatusCode::kInvalidArgument);
  const std::vector<SequenceInput> too_many = {{&a, 0, three}, {&b, 0, three}};
  EXPECT_EQ(fwd.RunSequences(too_many, &logits).code(), absl::StatusCode::kInvalidArgument);
  const std::vector<SequenceInput> overflow = {{&a, 6, three}};
  EXPECT_EQ(fwd.RunSequences(overflow, &logits).code(), absl::StatusCode::kOutOfRange);
  const std::vector<SequenceInput> no_kv = {{nullptr, 0, three}};
  EXPECT_EQ(fwd.RunSequences(no_kv, &logits).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace st
