// Forward-pass golden test: logits of tiny synthetic models for fixed token
// sequences, computed by the engine and by tests/golden/reference.py, an
// independent NumPy implementation of MODEL.md section 4 with its own GGUF
// parser, in float64.
//
// Tolerances. The engine computes in float32; the reference in float64.
// F32/F16/BF16 weights: both see identical weights, so differences are float32
// rounding only: |diff| <= 2e-4 * max(1, max|logit|). Q8_0/Q4_0 weights: the
// reference mirrors the engine's Q8_0 activation quantization
// (--q8-activations); a float32-vs-float64 rounding difference can move one
// activation by one quantization step, so the bound is 2e-3 * max(1, max|logit|).
// Every case must also agree on the argmax at every position.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "model/model.h"
#include "model/session.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

struct GoldenCase {
  std::string name;
  std::string preset;
  DType type;
  Gating gating;
  int n_tokens;
  int max_batch;
  bool tied = false;
};

std::vector<int32_t> Tokens(int n, int vocab) {
  std::vector<int32_t> t;
  uint32_t s = 12345;
  for (int i = 0; i < n; ++i) {
    s = s * 1103515245u + 12345u;
    t.push_back(static_cast<int32_t>((s >> 8) % vocab));
  }
  return t;
}

class GoldenTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenTest, LogitsMatchNumpyReference) {
  const GoldenCase& c = GetParam();
  testing::TempDir dir;
  auto path = testing::SynthModel(dir.path(), c.preset, c.type, c.gating, 11, c.tied);
  ASSERT_TRUE(path.ok()) << path.status();
  auto model = Model::Load(*path, ModelOptions{.threads = 2, .max_batch = c.max_batch});
  ASSERT_TRUE(model.ok()) << model.status();
  const int vocab = (*model)->config().vocab_size;
  const std::vector<int32_t> tokens = Tokens(c.n_tokens, vocab);

  Session session(**model, 256);
  auto logits = session.Evaluate(tokens, /*all_logits=*/true);
  ASSERT_TRUE(logits.ok()) << logits.status();

  const std::string tok_file = dir.File("tokens.txt"), out_file = dir.File("ref.bin");
  std::ofstream(tok_file) << absl::StrJoin(tokens, " ");
  const bool quant = IsBlockQuantized(c.type);
  const std::string cmd =
      absl::StrCat("/usr/bin/python3 ", ST_SOURCE_DIR, "/tests/golden/reference.py ", *path, " ",
                   tok_file, " ", out_file, quant ? " --q8-activations" : "");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(out_file, std::ios::binary);
  std::vector<double> ref(tokens.size() * vocab);
  in.read(reinterpret_cast<char*>(ref.data()), ref.size() * sizeof(double));
  ASSERT_EQ(in.gcount(), static_cast<std::streamsize>(ref.size() * sizeof(double)));

  double max_ref = 1.0, max_diff = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    ASSERT_TRUE(std::isfinite((*logits)[i])) << "logit " << i;
    max_ref = std::max(max_ref, std::abs(ref[i]));
    max_diff = std::max(max_diff, std::abs(ref[i] - (*logits)[i]));
  }
  const double bound = (quant ? 2e-3 : 2e-4) * max_ref;
  EXPECT_LE(max_diff, bound) << c.name << ": max |engine - reference| = " << max_diff
                             << ", max |ref| = " << max_ref;
  for (size_t t = 0; t < tokens.size(); ++t) {
    auto argmax = [&](auto begin) {
      return std::max_element(begin + t * vocab, begin + (t + 1) * vocab) - (begin + t * vocab);
    };
    EXPECT_EQ(argmax(logits->begin()), argmax(ref.begin())) << c.name << " position " << t;
  }
  std::printf("%s: max |diff| %.3g (bound %.3g), max |logit| %.3g\n", c.name.c_str(), max_diff,
              bound, max_ref);
}

INSTANTIATE_TEST_SUITE_P(
    Tiny, GoldenTest,
    ::testing::Values(
        GoldenCase{"f32_sigmoid", "tiny", DType::kF32, Gating::kSigmoid, 24, 64},
        GoldenCase{"f32_softmax", "tiny", DType::kF32, Gating::kSoftmax, 24, 64},
        GoldenCase{"f16_sigmoid", "tiny", DType::kF16, Gating::kSigmoid, 16, 64},
        GoldenCase{"bf16_sigmoid", "tiny", DType::kBF16, Gating::kSigmoid, 16, 64},
        GoldenCase{"q8_0_sigmoid", "tiny", DType::kQ8_0, Gating::kSigmoid, 24, 64},
        GoldenCase{"q8_0_softmax", "tiny", DType::kQ8_0, Gating::kSoftmax, 24, 64},
        GoldenCase{"q4_0_sigmoid", "tiny", DType::kQ4_0, Gating::kSigmoid, 16, 64},
        GoldenCase{"f32_tied_output", "tiny", DType::kF32, Gating::kSigmoid, 12, 64, true},
        // 21B schedule in miniature: NoPE global layers 0 and 4, window-8 RoPE
        // layers elsewhere; 40 tokens > window, in batches of 7 so the rings wrap.
        GoldenCase{"swa_f32", "tiny-swa", DType::kF32, Gating::kSigmoid, 40, 7},
        GoldenCase{"swa_q8_0_softmax", "tiny-swa", DType::kQ8_0, Gating::kSoftmax, 40, 64}),
    [](const ::testing::TestParamInfo<GoldenCase>& info) { return info.param.name; });

}  // namespace
}  // namespace st
