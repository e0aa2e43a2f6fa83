// Forward's pure-decode-step counters (distinct experts, K/V bytes) and the
// memory roofline model/step_traffic.h builds from them.
#include "model/step_traffic.h"

#include <algorithm>
#include <vector>

#include "gtest/gtest.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/traffic.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

TEST(StepTrafficTest, DecodeStepCountsTheUnionOfExpertsAndEachSequencesKv) {
  testing::TempDir dir;
  auto path = testing::SynthModel(dir.path(), "tiny-swa", DType::kQ8_0);
  ASSERT_TRUE(path.ok()) << path.status();
  auto model = Model::Load(*path, ModelOptions{.threads = 2, .max_batch = 16});
  ASSERT_TRUE(model.ok()) << model.status();
  Forward& fwd = (*model)->forward();
  const ModelConfig& c = (*model)->config();
  KvCache a(c, 64, fwd.max_batch()), b(c, 64, fwd.max_batch());
  const std::vector<int32_t> pa = {5, 17, 99, 3, 42, 7, 8, 9, 10, 11, 12}, pb = {77, 1, 2};
  std::vector<float> logits;
  // Prompts (one sequence of several tokens each): not decode steps.
  ASSERT_TRUE(fwd.RunSequences(std::vector<SequenceInput>{{&a, 0, pa}}, &logits).ok());
  ASSERT_TRUE(fwd.RunSequences(std::vector<SequenceInput>{{&b, 0, pb}}, &logits).ok());
  EXPECT_EQ(fwd.decode_steps(1).steps, 0u);
  EXPECT_EQ(fwd.decode_steps(2).steps, 0u);

  const std::vector<uint64_t> counts0 = fwd.routing_counts();
  const int32_t ta = 21, tb = 22;
  const int64_t pos_a = static_cast<int64_t>(pa.size()), pos_b = static_cast<int64_t>(pb.size());
  ASSERT_TRUE(fwd.RunSequences(std::vector<SequenceInput>{{&a, pos_a, {&ta, 1}},
                                                          {&b, pos_b, {&tb, 1}}},
                               &logits)
                  .ok());
  const DecodeStepCounters s = fwd.decode_steps(2);
  EXPECT_EQ(s.steps, 1u);
  EXPECT_GT(s.seconds, 0.0);
  // Distinct experts per layer, from the routing counts of this step alone.
  uint64_t distinct = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    for (int e = 0; e < c.n_experts; ++e) {
      const size_t i = static_cast<size_t>(l) * c.n_experts + e;
      distinct += fwd.routing_counts()[i] > counts0[i];
    }
  }
  EXPECT_EQ(s.experts_touched, distinct);
  EXPECT_GE(s.experts_touched, static_cast<uint64_t>(c.n_layers) * c.top_k);
  EXPECT_LE(s.experts_touched,
            static_cast<uint64_t>(c.n_layers) * std::min(2 * c.top_k, c.n_experts));
  // K/V bytes: every layer, each sequence its positions 0..pos (the window on
  // sliding layers), K and V rows of kv_dim F16 values.
  uint64_t kv = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    for (int64_t pos : {pos_a, pos_b}) {
      const int64_t w = c.layers[l].window;
      const int64_t n = w > 0 ? std::min<int64_t>(pos + 1, w) : pos + 1;
      kv += static_cast<uint64_t>(n) * 2 * c.kv_dim() * 2;
    }
  }
  EXPECT_EQ(s.kv_bytes, kv);

  // The roofline from those counters.
  const DecodeTraffic t = DecodeTrafficPerToken(c, (*model)->weights());
  const StepRoofline r = DecodeStepRoofline(c, (*model)->weights(), 2, s, 10.0);
  EXPECT_EQ(r.steps, 1u);
  EXPECT_DOUBLE_EQ(r.experts_per_layer, static_cast<double>(distinct) / c.n_layers);
  EXPECT_DOUBLE_EQ(r.dense_bytes, static_cast<double>(t.total() - t.experts) +
                                      (*model)->weights().token_embd.row_bytes());
  EXPECT_DOUBLE_EQ(r.expert_bytes, static_cast<double>(distinct * ExpertBytes(c)));
  EXPECT_DOUBLE_EQ(r.kv_bytes, static_cast<double>(kv));
  EXPECT_DOUBLE_EQ(r.bound_tps, 10e9 * 2 / r.step_bytes());
  EXPECT_GT(r.step_tps, 0.0);
  // One token's experts are exactly top_k per layer; DecodeTrafficPerToken agrees.
  EXPECT_EQ(ExpertBytes(c) * c.top_k * c.n_layers, t.experts);

  fwd.ResetStats();
  EXPECT_EQ(fwd.decode_steps(2).steps, 0u);
  EXPECT_EQ(DecodeStepRoofline(c, (*model)->weights(), 2, DecodeStepCounters{}, 10.0).bound_tps, 0.0);
}

}  // namespace
}  // namespace st
