// Model config from GGUF metadata: schedule, defaults, and clear errors for
// missing keys and shapes that disagree with the config.
#include "model/config.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model/model.h"
#include "model/session.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

using ::st::testing::GgufContents;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = testing::SynthModel(dir_.path(), "tiny", DType::kF32);
    ASSERT_TRUE(p.ok()) << p.status();
    path_ = *p;
    auto c = testing::ReadGguf(path_);
    ASSERT_TRUE(c.ok()) << c.status();
    contents_ = *c;
  }
  // Writes the edited contents and loads its config.
  absl::StatusOr<ModelConfig> Load(const GgufContents& c) {
    const std::string p = dir_.File("edited.gguf");
    if (auto st = testing::WriteGguf(c, p); !st.ok()) return st;
    auto f = GgufFile::Open(p);
    if (!f.ok()) return f.status();
    return LoadModelConfig(**f);
  }
  testing::TempDir dir_;
  std::string path_;
  GgufContents contents_;
};

TEST_F(ConfigTest, TinyPresetConfig) {
  auto c = Load(contents_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->d_model, 128);
  EXPECT_EQ(c->n_layers, 4);
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->top_k, 2);
  EXPECT_EQ(c->gating, Gating::kSigmoid);
  EXPECT_FALSE(c->tied_output);
  EXPECT_FALSE(c->down_transposed);
  for (const LayerConfig& l : c->layers) {
    EXPECT_TRUE(l.use_rope);
    EXPECT_EQ(l.window, 0);
  }
}

// The schedule llama.cpp builds (checked against it by
// scripts/check-llamacpp-parity): "window" is the layer's window (0 =
// global), "rope" whether it rotates.
struct Schedule {
  std::vector<int64_t> window;
  std::vector<bool> rope;
};
Schedule ScheduleOf(const ModelConfig& c) {
  Schedule s;
  for (const LayerConfig& l : c.layers) {
    s.window.push_back(l.window);
    s.rope.push_back(l.use_rope);
  }
  return s;
}

TEST_F(ConfigTest, SlidingWindowScheduleIs21BPattern) {
  auto p = testing::SynthModel(dir_.path(), "tiny-swa", DType::kF32);
  ASSERT_TRUE(p.ok()) << p.status();
  auto swa = testing::ReadGguf(*p);
  ASSERT_TRUE(swa.ok()) << swa.status();
  swa->SetKey("smallthinker.attention.sliding_window", GgufValue::U32(4096));
  auto c = Load(*swa);
  ASSERT_TRUE(c.ok()) << c.status();
  // 8 layers: 0 and 4 global NoPE, the rest sliding RoPE (the 21B's 1:3).
  Schedule s = ScheduleOf(*c);
  EXPECT_EQ(s.window, (std::vector<int64_t>{0, 4096, 4096, 4096, 0, 4096, 4096, 4096}));
  EXPECT_EQ(s.rope, (std::vector<bool>{false, true, true, true, false, true, true, true}));
  // The optional pattern key moves the window, never the NoPE layers
  // (llama.cpp's n_no_rope_layer_step is 4 whatever the file says) ...
  swa->SetKey("smallthinker.attention.sliding_window_pattern", GgufValue::U32(2));
  c = Load(*swa);
  ASSERT_TRUE(c.ok()) << c.status();
  s = ScheduleOf(*c);
  EXPECT_EQ(s.window, (std::vector<int64_t>{0, 4096, 0, 4096, 0, 4096, 0, 4096}));
  EXPECT_EQ(s.rope, (std::vector<bool>{false, true, true, true, false, true, true, true}));
  // ... and 0 makes every layer slide.
  swa->SetKey("smallthinker.attention.sliding_window_pattern", GgufValue::U32(0));
  c = Load(*swa);
  ASSERT_TRUE(c.ok()) << c.status();
  s = ScheduleOf(*c);
  EXPECT_EQ(s.window, std::vector<int64_t>(8, 4096));
  EXPECT_EQ(s.rope, (std::vector<bool>{false, true, true, true, false, true, true, true}));
}

TEST_F(ConfigTest, FourLayerSlidingWindowModelRopesEveryLayerAsLlamaCppDoes) {
  // llama.cpp's `use_rope = n_no_rope_layer_step == n_layer || ...`.
  contents_.SetKey("smallthinker.attention.sliding_window", GgufValue::U32(4096));
  auto c = Load(contents_);
  ASSERT_TRUE(c.ok()) << c.status();
  const Schedule s = ScheduleOf(*c);
  EXPECT_EQ(s.window, (std::vector<int64_t>{0, 4096, 4096, 4096}));
  EXPECT_EQ(s.rope, std::vector<bool>(4, true));
}

TEST_F(ConfigTest, MissingGatingKeyDefaultsToSigmoid) {
  contents_.SetKey("smallthinker.expert_gating_func", GgufValue::U32(1));
  auto soft = Load(contents_);
  ASSERT_TRUE(soft.ok());
  EXPECT_EQ(soft->gating, Gating::kSoftmax);
  contents_.EraseKey("smallthinker.expert_gating_func");
  auto c = Load(contents_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->gating, Gating::kSigmoid);
}

TEST_F(ConfigTest, MissingRequiredKeyIsNamed) {
  for (const char* key : {"smallthinker.embedding_length", "smallthinker.block_count",
                          "smallthinker.expert_count", "smallthinker.attention.head_count",
                          "smallthinker.attention.layer_norm_rms_epsilon"}) {
    GgufContents c = contents_;
    c.EraseKey(key);
    auto r = Load(c);
    ASSERT_FALSE(r.ok()) << key;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(key), std::string::npos) << r.status();
  }
}

// RoPE scaling (not implemented) and split-GGUF shards are refused by name;
// a "none" scaling type loads as before.
TEST_F(ConfigTest, RopeScalingAndSplitShardsAreRefused) {
  GgufContents none = contents_;
  none.SetKey("smallthinker.rope.scaling.type", GgufValue::Str("none"));
  EXPECT_TRUE(Load(none).ok());
  GgufContents yarn = contents_;
  yarn.SetKey("smallthinker.rope.scaling.type", GgufValue::Str("yarn"));
  auto r = Load(yarn);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("rope.scaling.type"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("yarn"), std::string::npos) << r.status();
  // A scaling factor without a type is linear scaling to llama.cpp.
  for (const char* key : {"smallthinker.rope.scaling.factor", "smallthinker.rope.scale_linear"}) {
    GgufContents linear = contents_;
    linear.SetKey(key, GgufValue::F32(4.0f));
    r = Load(linear);
    ASSERT_FALSE(r.ok()) << key;
    EXPECT_NE(r.status().message().find(key), std::string::npos) << r.status();
    linear.SetKey(key, GgufValue::F32(1.0f));  // no scaling
    EXPECT_TRUE(Load(linear).ok()) << key;
    linear.SetKey(key, GgufValue::F32(4.0f));
    linear.SetKey("smallthinker.rope.scaling.type", GgufValue::Str("none"));  // the type decides
    EXPECT_TRUE(Load(linear).ok()) << key;
  }
  for (uint16_t merged : {0, 1}) {  // llama-gguf-split --merge writes 0
    GgufContents one = contents_;
    one.SetKey("split.count", GgufValue::U16(merged));
    EXPECT_TRUE(Load(one).ok()) << "split.count " << merged;
  }
  GgufContents shard = contents_;
  shard.SetKey("split.count", GgufValue::U16(2));
  r = Load(shard);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("llama-gguf-split --merge"), std::string::npos)
      << r.status();
}

// Layer and expert counts past llama.cpp's limits are refused before
// anything is sized by them (2^20 experts had loaded, then hung routing).
TEST_F(ConfigTest, LayerAndExpertCountsAreBounded) {
  for (const char* key : {"smallthinker.expert_count", "smallthinker.block_count"}) {
    GgufContents c = contents_;
    c.SetKey(key, GgufValue::U32(1u << 20));
    if (std::string(key) == "smallthinker.expert_count") {
      c.SetKey("smallthinker.expert_used_count", GgufValue::U32(1u << 20));
    }
    auto r = Load(c);
    ASSERT_FALSE(r.ok()) << key;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("out of range (at most 512)"), std::string::npos)
        << r.status();
  }
}

// A block_count below the blocks the file holds (found by a session-33
// audit: a 4-block file saying 1 or 3 loaded and ran fewer layers).
TEST_F(ConfigTest, TensorsPastBlockCountAreRefused) {
  for (uint32_t n : {1u, 3u}) {
    GgufContents c = contents_;
    c.SetKey("smallthinker.block_count", GgufValue::U32(n));
    auto r = Load(c);
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(absl::StrCat("but block_count is ", n)), std::string::npos)
        << r.status();
  }
}

// A RoPE base that is not a positive finite number (found by a session-33
// audit: inf loaded).
TEST_F(ConfigTest, RopeBaseMustBePositiveAndFinite) {
  for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                    0.0f, -1.0f}) {
    GgufContents c = contents_;
    c.SetKey("smallthinker.rope.freq_base", GgufValue::F32(bad));
    auto r = Load(c);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("positive and finite"), std::string::npos) << r.status();
  }
}

TEST_F(ConfigTest, WrongArchitectureIsRefused) {
  contents_.SetKey("general.architecture", GgufValue::Str("llama"));
  auto r = Load(contents_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("llama"), std::string::npos);
}

TEST_F(ConfigTest, ShapeDisagreeingWithConfigIsNamed) {
  contents_.SetKey("smallthinker.expert_count", GgufValue::U32(16));
  auto r = Load(contents_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("ffn_gate_inp"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("{128, 8}"), std::string::npos) << r.status();
}

TEST_F(ConfigTest, MissingTensorIsNamed) {
  contents_.EraseTensor("blk.2.attn_k.weight");
  auto r = Load(contents_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("blk.2.attn_k.weight"), std::string::npos) << r.status();
}

TEST_F(ConfigTest, TopKAboveExpertCountIsRefused) {
  contents_.SetKey("smallthinker.expert_used_count", GgufValue::U32(9));
  auto r = Load(contents_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("expert_used_count"), std::string::npos);
}

TEST_F(ConfigTest, MissingOutputFallsBackToTiedEmbedding) {
  contents_.EraseTensor("output.weight");
  auto c = Load(contents_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->tied_output);
}

// PowerInfer's --transpose-down files store ffn_down_exps as {d_model,
// d_expert, E}; detected by shape, they must give the same logits.
TEST_F(ConfigTest, TransposedDownIsDetectedAndGivesSameLogits) {
  GgufContents t = contents_;
  for (int l = 0; l < 4; ++l) {
    auto* down = t.FindTensor("blk." + std::to_string(l) + ".ffn_down_exps.weight");
    ASSERT_NE(down, nullptr);
    const uint64_t ff = down->ne[0], d = down->ne[1], e = down->ne[2];
    std::string out(down->bytes.size(), '\0');
    const float* src = reinterpret_cast<const float*>(down->bytes.data());
    float* dst = reinterpret_cast<float*>(out.data());
    for (uint64_t x = 0; x < e; ++x) {
      for (uint64_t r = 0; r < d; ++r) {
        for (uint64_t c = 0; c < ff; ++c) dst[x * d * ff + c * d + r] = src[x * d * ff + r * ff + c];
      }
    }
    down->bytes = out;
    down->ne = {d, ff, e};
  }
  const std::string tpath = dir_.File("transposed.gguf");
  ASSERT_TRUE(testing::WriteGguf(t, tpath).ok());
  auto a = Model::Load(path_, ModelOptions{.threads = 1});
  auto b = Model::Load(tpath, ModelOptions{.threads = 1});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_FALSE((*a)->config().down_transposed);
  EXPECT_TRUE((*b)->config().down_transposed);
  Session sa(**a, 32), sb(**b, 32);
  std::vector<int32_t> tokens = {1, 50, 100, 7, 200};
  auto la = sa.Evaluate(tokens, true);
  auto lb = sb.Evaluate(tokens, true);
  ASSERT_TRUE(la.ok() && lb.ok());
  double max_diff = 0;
  for (size_t i = 0; i < la->size(); ++i) {
    max_diff = std::max<double>(max_diff, std::abs((*la)[i] - (*lb)[i]));
  }
  EXPECT_LT(max_diff, 1e-4);
}

}  // namespace
}  // namespace st
