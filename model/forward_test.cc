// Decode step by step with the KV cache must give the logits of one prefill
// of the whole sequence, for global and sliding-window (ring) layers alike;
// bad tokens and context overflow are errors; speculation guesses from the
// state after attention.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/packed_matrix.h"
#include "model/expert_executor.h"
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

// Records, for every decode step, the guess Forward's speculation makes for
// layer l+1 and the experts layer l+1's router picks from the state layer
// l's experts see: their h is RmsNorm(x) * g, so h / g is x (with layer l's
// attention added) up to a positive factor, which top-k ignores.
class SpeculationRecorder : public ExpertExecutor {
 public:
  explicit SpeculationRecorder(Model& model) : model_(model), inner_(&model.experts()) {}
  void Prepare(int layer, const Routes& r) override { inner_->Prepare(layer, r); }
  void Speculate(int layer, const Routes& r) override {
    if (r.n_tokens == 1) guess_[layer] = r.ids;
    inner_->Speculate(layer, r);
  }
  absl::Status Run(int layer, const Routes& r, const float* h, float* out) override {
    const ModelConfig& c = model_.config();
    if (r.n_tokens == 1 && layer + 1 < c.n_layers) {
      const LayerWeights& w = model_.weights().layers[layer];
      const MatrixRef& router = model_.weights().layers[layer + 1].router;
      if (router.type != DType::kF32 || router.data == nullptr) {
        ADD_FAILURE() << "the test reads an F32 router";
        return inner_->Run(layer, r, h, out);
      }
      const float* wr = static_cast<const float*>(router.data);
      std::vector<double> logit(c.n_experts);
      for (int e = 0; e < c.n_experts; ++e) {
        for (int i = 0; i < c.d_model; ++i) {
          // Synthetic norm gains are 1 +- 0.1 noise: never 0.
          logit[e] += static_cast<double>(wr[static_cast<size_t>(e) * c.d_model + i]) * h[i] /
                      w.ffn_norm[i];
        }
      }
      std::vector<int> order(c.n_experts);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logit[a] > logit[b]; });
      const int k = c.top_k;
      chosen_[layer + 1] = std::vector<int32_t>(order.begin(), order.begin() + k);
      // How far the k-th pick is from the first left out, relative to the logits' scale.
      double scale = 1e-30;
      for (double v : logit) scale = std::max(scale, std::abs(v));
      margin_[layer + 1] = (logit[order[k - 1]] - logit[order[k]]) / scale;
    }
    return inner_->Run(layer, r, h, out);
  }
  // Layers whose guess differs from the pick, leaving out near-ties (the
  // k-th and (k+1)-th logits closer than `tie` of the largest).
  int Mismatches(int* compared, double tie = 1e-4) {
    int bad = 0;
    for (const auto& [layer, ids] : guess_) {
      if (!chosen_.count(layer)) continue;
      std::vector<int32_t> a = ids, b = chosen_[layer];
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      ++*compared;
      if (a != b && margin_[layer] > tie) ++bad;
    }
    guess_.clear();
    chosen_.clear();
    return bad;
  }

 private:
  Model& model_;
  ExpertExecutor* inner_;
  std::map<int, std::vector<int32_t>> guess_, chosen_;
  std::map<int, double> margin_;
};

TEST(ForwardTest, SpeculationGuessesFromTheStateAfterAttention) {
  testing::TempDir dir;
  auto path = testing::SynthModel(dir.path(), "tiny", DType::kF32);
  ASSERT_TRUE(path.ok()) << path.status();
  auto model = Model::Load(*path, ModelOptions{.threads = 1});
  ASSERT_TRUE(model.ok()) << model.status();
  SpeculationRecorder recorder(**model);
  (*model)->forward().set_experts(&recorder);
  (*model)->forward().set_speculate(true);
  Session s(**model, 64);
  const std::vector<int32_t> prompt = Tokens(5, (*model)->config().vocab_size);
  ASSERT_TRUE(s.Evaluate(prompt, false).ok());
  int compared = 0, mismatches = 0;
  for (int t = 0; t < 24; ++t) {
    auto step = s.Evaluate({(prompt[t % prompt.size()] + t) % (*model)->config().vocab_size}, false);
    ASSERT_TRUE(step.ok()) << step.status();
    mismatches += recorder.Mismatches(&compared);
  }
  // Every decode step guesses layers 1..n_layers-1.
  EXPECT_EQ(compared, 24 * ((*model)->config().n_layers - 1));
  EXPECT_EQ(mismatches, 0) << "of " << compared << " guesses";
}

// Where the router can be packed (16 experts here), the guesses read its
// Q8_0 copy: the same picks but for near-ties (Q8_0 weights and activations
// move a logit by well under 1% of the largest), and the same logits.
TEST(ForwardTest, SpeculationReadsAQ8CopyOfTheRouter) {
  testing::TempDir dir;
  auto path = testing::SynthModel(dir.path(), "tiny-256", DType::kF32);
  ASSERT_TRUE(path.ok()) << path.status();
  auto model = Model::Load(*path, ModelOptions{.threads = 2});
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<int32_t> prompt = Tokens(5, (*model)->config().vocab_size);
  std::vector<std::vector<float>> plain;
  {
    Session s(**model, 64);
    for (int t = 0; t < 8; ++t) {
      auto step = t == 0 ? s.Evaluate(prompt, false) : s.Evaluate({prompt[t % 5]}, false);
      ASSERT_TRUE(step.ok()) << step.status();
      plain.push_back(*step);
    }
  }
  const MatrixRef& router = (*model)->weights().layers[1].router;
  if (!CanPack(DType::kQ8_0, router.rows, router.cols)) {
    GTEST_SKIP() << "no packed Q8_0 kernel on this CPU: the guesses read the router itself";
  }
  SpeculationRecorder recorder(**model);
  (*model)->forward().set_experts(&recorder);
  (*model)->forward().set_speculate(true);
  const int n_layers = (*model)->config().n_layers;
  // Layer 0 is never guessed: no copy.
  EXPECT_EQ((*model)->forward().guess_router(0).data, (*model)->weights().layers[0].router.data);
  for (int l = 1; l < n_layers; ++l) {
    const MatrixRef& g = (*model)->forward().guess_router(l);
    EXPECT_EQ(g.type, DType::kQ8_0) << "layer " << l;
    EXPECT_NE(g.packed, nullptr) << "layer " << l;
    EXPECT_EQ(g.rows, (*model)->weights().layers[l].router.rows);
  }
  auto guess = [&](int* compared) {
    Session s(**model, 64);
    int mismatches = 0;
    for (int t = 0; t < 8; ++t) {
      auto step = t == 0 ? s.Evaluate(prompt, false) : s.Evaluate({prompt[t % 5]}, false);
      EXPECT_TRUE(step.ok()) << step.status();
      if (step.ok()) {
        EXPECT_EQ(*step, plain[t]) << "step " << t;  // guesses never change the numbers
      }
      if (t > 0) mismatches += recorder.Mismatches(compared, /*tie=*/0.01);
    }
    return mismatches;
  };
  int compared = 0;
  EXPECT_EQ(guess(&compared), 0) << "of " << compared << " guesses";
  EXPECT_EQ(compared, 7 * (n_layers - 1));
  // The guesses read the copies: zeroed (all logits 0), they go wrong.
  for (int l = 1; l < n_layers; ++l) {
    const MatrixRef& g = (*model)->forward().guess_router(l);
    std::memset(const_cast<void*>(g.packed), 0, g.rows * RowBytes(DType::kQ8_0, g.cols));
  }
  compared = 0;
  EXPECT_GT(guess(&compared), compared / 2) << "of " << compared << " guesses";
}

}  // namespace
}  // namespace st
