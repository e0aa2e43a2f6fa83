#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace st {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<Candidate> MakeCandidates(const std::vector<float>& logits) {
  std::vector<Candidate> c;
  for (size_t i = 0; i < logits.size(); ++i) c.push_back({static_cast<int32_t>(i), logits[i], 0});
  return c;
}

std::vector<int32_t> Ids(const std::vector<Candidate>& c) {
  std::vector<int32_t> ids;
  for (const Candidate& x : c) ids.push_back(x.id);
  return ids;
}

// Only the pure sampling stage: no truncation, no penalties.
SamplingParams PlainParams(float temperature, uint64_t seed) {
  return SamplingParams{.temperature = temperature, .top_k = 0, .top_p = 1.0f, .seed = seed};
}

std::vector<float> RandomLogits(size_t n, uint32_t seed, bool integer_valued) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(n);
  for (float& l : logits) l = integer_valued ? std::round(normal(rng)) : normal(rng);
  return logits;
}

TEST(ValidateSamplingParamsTest, AcceptsDefaultsAndBoundaries) {
  EXPECT_TRUE(ValidateSamplingParams({}).ok());
  EXPECT_TRUE(ValidateSamplingParams({.temperature = 0, .top_p = 1, .min_p = 1}).ok());
  EXPECT_TRUE(ValidateSamplingParams({.top_k = -5, .repeat_last_n = -1}).ok());
  EXPECT_TRUE(ValidateSamplingParams({.presence_penalty = -2, .frequency_penalty = 2}).ok());
}

TEST(ValidateSamplingParamsTest, RejectsEachBadParameterByName) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const struct {
    SamplingParams params;
    const char* name;
  } cases[] = {
      {{.temperature = -0.1f}, "temperature"},
      {{.temperature = std::numeric_limits<float>::infinity()}, "temperature"},
      {{.top_p = 0.0f}, "top_p"},
      {{.top_p = 1.5f}, "top_p"},
      {{.top_p = nan}, "top_p"},
      {{.min_p = -0.1f}, "min_p"},
      {{.min_p = 1.1f}, "min_p"},
      {{.repeat_penalty = 0.0f}, "repeat_penalty"},
      {{.repeat_last_n = -2}, "repeat_last_n"},
      {{.presence_penalty = 2.5f}, "presence_penalty"},
      {{.frequency_penalty = nan}, "frequency_penalty"},
  };
  for (const auto& c : cases) {
    absl::Status status = ValidateSamplingParams(c.params);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.name));
  }
}

TEST(SamplerTest, GreedyIsArgmaxWithTiesToLowestId) {
  Sampler sampler({.temperature = 0.0f});
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, 2.0f};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(sampler.Sample(logits, {}), 1);
  const std::vector<float> single = {-7.0f};
  EXPECT_EQ(sampler.Sample(single, {}), 0);
}

TEST(SamplerTest, GreedySeesPenalizedLogits) {
  Sampler sampler({.temperature = 0.0f, .repeat_penalty = 2.0f});
  const std::vector<float> logits = {1.0f, 3.0f, 2.5f};
  const std::vector<int32_t> history = {1};  // 3 -> 1.5, so id 2 wins
  EXPECT_EQ(sampler.Sample(logits, history), 2);
}

// A valid but tiny repeat_penalty overflows a penalized logit: the token
// is drawn, as its (clamped) logit says, and nothing aborts (with min-p on,
// every candidate had been erased and a CHECK had killed the server).
TEST(SamplerTest, OverflowingPenaltyIsDrawnNotACrash) {
  const std::vector<float> logits = {0.5f, 2.0f, 1.0f, -1.0f};
  for (float min_p : {0.0f, 0.05f}) {
    Sampler sampler({.temperature = 0.6f, .min_p = min_p, .repeat_penalty = 1e-40f, .seed = 3});
    for (int i = 0; i < 20; ++i) EXPECT_EQ(sampler.Sample(logits, {2}), 2) << min_p;
  }
}

// A +inf maximum stays a candidate under min-p.
TEST(MinPTest, InfiniteMaximumStays) {
  std::vector<Candidate> c = {{0, 1.0f}, {1, std::numeric_limits<float>::infinity()}};
  ApplyMinP(0.1f, &c);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].id, 1);
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedDifferentTokens) {
  const std::vector<float> flat(1000, 0.0f);
  auto run = [&](uint64_t seed) {
    Sampler sampler(PlainParams(1.0f, seed));
    EXPECT_EQ(sampler.seed(), seed);
    std::vector<int32_t> tokens;
    for (int i = 0; i < 200; ++i) tokens.push_back(sampler.Sample(flat, tokens));
    return tokens;
  };
  const std::vector<int32_t> a = run(42);
  EXPECT_EQ(a, run(42));
  EXPECT_NE(a, run(43));
  // Platform independence: on a flat distribution the draw is
  // floor(u * 1000) with u the top 53 bits of mt19937_64 (a standardized
  // engine) scaled by 2^-53, so this reference is computed without Sampler.
  std::mt19937_64 rng(42);
  for (int i = 0; i < 200; ++i) {
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    EXPECT_EQ(a[i], static_cast<int32_t>(u * 1000)) << "draw " << i;
  }
}

TEST(SamplerTest, ZeroSeedDrawsAReportedReproducibleSeed) {
  const std::vector<float> flat(1000, 0.0f);
  Sampler random_seeded(PlainParams(1.0f, 0));
  ASSERT_NE(random_seeded.seed(), 0u);
  Sampler replay(PlainParams(1.0f, random_seeded.seed()));
  for (int i = 0; i < 50; ++i) EXPECT_EQ(random_seeded.Sample(flat, {}), replay.Sample(flat, {}));
}

TEST(SamplerTest, TinyTemperatureIsNearlyGreedyWithoutNaN) {
  // 1 / 1e-40f overflows to inf; the softmax must not produce 0 * inf.
  Sampler sampler(PlainParams(1e-40f, 4));
  const std::vector<float> peaked = {1.0f, 3.0f, 2.0f};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(sampler.Sample(peaked, {}), 1);
  const std::vector<float> tied = {3.0f, 0.0f, 3.0f};
  std::vector<int> counts(3, 0);
  for (int i = 0; i < 1000; ++i) ++counts[sampler.Sample(tied, {})];
  EXPECT_EQ(counts[1], 0);
  EXPECT_GT(counts[0], 400);
  EXPECT_GT(counts[2], 400);
}

TEST(SamplerTest, NegativeInfinityLogitsAreNeverDrawn) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> logits = {-inf, 0.0f, -inf, 0.0f};
  Sampler sampler(PlainParams(1.0f, 3));
  for (int i = 0; i < 500; ++i) {
    const int32_t t = sampler.Sample(logits, {});
    EXPECT_TRUE(t == 1 || t == 3) << t;
  }
}

TEST(TopKTest, KeepsTheKBestSortedWithTiesToLowerId) {
  const std::vector<float> logits = {1, 5, 3, 5, 2};
  auto run = [&](int k) {
    std::vector<Candidate> c = MakeCandidates(logits);
    ApplyTopK(k, &c);
    return Ids(c);
  };
  EXPECT_THAT(run(1), ElementsAre(1));
  EXPECT_THAT(run(2), ElementsAre(1, 3));
  EXPECT_THAT(run(3), ElementsAre(1, 3, 2));
  EXPECT_THAT(run(5), ElementsAre(1, 3, 2, 4, 0));
  EXPECT_THAT(run(100), ElementsAre(1, 3, 2, 4, 0));  // k > vocab keeps all
  EXPECT_THAT(run(0), ElementsAre(0, 1, 2, 3, 4));    // off: untouched
  EXPECT_THAT(run(-1), ElementsAre(0, 1, 2, 3, 4));
}

TEST(TopKTest, MatchesFullSortReference) {
  for (int k : {1, 7, 64, 999, 1000, 1001}) {
    const std::vector<float> logits = RandomLogits(1000, k, /*integer_valued=*/true);
    std::vector<Candidate> fast = MakeCandidates(logits);
    std::vector<Candidate> slow = fast;
    ApplyTopK(k, &fast);
    std::sort(slow.begin(), slow.end(), CandidateBefore);
    slow.resize(std::min<size_t>(slow.size(), k));
    EXPECT_EQ(Ids(fast), Ids(slow)) << "k=" << k;
  }
}

TEST(TopPTest, EqualProbabilitiesHitTheBoundaryExactly) {
  // Four equal logits: p = 0.25 each, exactly representable.
  auto run = [](float top_p) {
    std::vector<Candidate> c = MakeCandidates({0, 0, 0, 0});
    ApplyTopP(top_p, &c);
    return Ids(c);
  };
  EXPECT_THAT(run(0.5f), ElementsAre(0, 1));  // cumulative 0.5 >= 0.5: stop
  EXPECT_THAT(run(0.50001f), ElementsAre(0, 1, 2));
  EXPECT_THAT(run(0.25f), ElementsAre(0));
  EXPECT_THAT(run(0.75f), ElementsAre(0, 1, 2));
  EXPECT_THAT(run(0.9f), ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(run(0.001f), ElementsAre(0));  // always at least one
  EXPECT_THAT(run(1.0f), ElementsAre(0, 1, 2, 3));
}

TEST(TopPTest, KeepsSmallestProbabilitySortedPrefix) {
  // p = {0.2, 0.5, 0.3} for ids {0, 1, 2}; sorted: 1 (0.5), 2 (0.8), 0 (1.0).
  auto run = [](float top_p) {
    std::vector<Candidate> c = MakeCandidates({std::log(0.2f), std::log(0.5f), std::log(0.3f)});
    ApplyTopP(top_p, &c);
    return c;
  };
  EXPECT_THAT(Ids(run(0.45f)), ElementsAre(1));
  EXPECT_THAT(Ids(run(0.55f)), ElementsAre(1, 2));
  EXPECT_THAT(Ids(run(0.79f)), ElementsAre(1, 2));
  EXPECT_THAT(Ids(run(0.81f)), ElementsAre(1, 2, 0));
  const std::vector<Candidate> kept = run(0.7f);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_NEAR(kept[0].p, 0.5f, 1e-6);  // probabilities over the input
  EXPECT_NEAR(kept[1].p, 0.3f, 1e-6);
}

TEST(TopPTest, MatchesFullSortReferenceOnLargeVocab) {
  // Flat-ish logits make the nucleus longer than the first sorted prefix, so
  // the geometric growth is exercised.
  const std::vector<float> logits = RandomLogits(20000, 5, /*integer_valued=*/false);
  for (float top_p : {0.01f, 0.3f, 0.9f, 0.99f, 0.999f, 0.9999999f}) {
    std::vector<Candidate> fast = MakeCandidates(logits);
    ApplyTopP(top_p, &fast);
    std::vector<Candidate> slow = MakeCandidates(logits);
    ComputeProbabilities(absl::MakeSpan(slow));
    std::sort(slow.begin(), slow.end(), CandidateBefore);
    double cumulative = 0;
    size_t keep = slow.size();
    for (size_t i = 0; i < slow.size(); ++i) {
      cumulative += slow[i].p;
      if (cumulative >= top_p) {
        keep = i + 1;
        break;
      }
    }
    slow.resize(keep);
    EXPECT_EQ(Ids(fast), Ids(slow)) << "top_p=" << top_p;
  }
}

TEST(MinPTest, KeepsTokensWithinRatioOfTheMaxInOrder) {
  // Relative to the max (id 1): id 2 at e^-1 = 0.368, id 0 at e^-2 = 0.135.
  auto run = [](float min_p) {
    std::vector<Candidate> c = MakeCandidates({1, 3, 2, 3 - 0.5f});
    ApplyMinP(min_p, &c);
    return Ids(c);
  };
  EXPECT_THAT(run(1.0f), ElementsAre(1));  // only the max
  EXPECT_THAT(run(0.7f), ElementsAre(1));  // e^-0.5 = 0.607 < 0.7
  EXPECT_THAT(run(0.6f), ElementsAre(1, 3));
  EXPECT_THAT(run(0.3f), ElementsAre(1, 2, 3));
  EXPECT_THAT(run(0.1f), ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(run(0.0f), ElementsAre(0, 1, 2, 3));
}

TEST(MinPTest, MinPOneKeepsAllTiedMaxima) {
  std::vector<Candidate> c = MakeCandidates({2, 1, 0, 2});
  ApplyMinP(1.0f, &c);
  EXPECT_THAT(Ids(c), ElementsAre(0, 3));
}

// logits by id: {2, -2, 1, 0.5, 3}; history counts: id0 x2, id1 x1, id4 x1.
std::vector<float> Penalized(SamplingParams params, std::vector<int32_t> history) {
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f};
  ApplyPenalties(params, history, absl::MakeSpan(logits));
  return logits;
}
const std::vector<int32_t> kHistory = {0, 1, 0, 4};

TEST(PenaltiesTest, RepeatPenaltyDividesPositiveAndMultipliesNegative) {
  EXPECT_THAT(Penalized({.repeat_penalty = 2.0f}, kHistory),
              ElementsAre(1.0f, -4.0f, 1.0f, 0.5f, 1.5f));
}

TEST(PenaltiesTest, PresencePenaltyOncePerToken) {
  EXPECT_THAT(Penalized({.presence_penalty = 0.5f}, kHistory),
              ElementsAre(1.5f, -2.5f, 1.0f, 0.5f, 2.5f));
}

TEST(PenaltiesTest, FrequencyPenaltyScalesWithCount) {
  EXPECT_THAT(Penalized({.frequency_penalty = 0.25f}, kHistory),
              ElementsAre(1.5f, -2.25f, 1.0f, 0.5f, 2.75f));
}

TEST(PenaltiesTest, AllThreeComposeRepeatFirst) {
  // id0: 2/2 - 0.5 - 2*0.25 = 0; id1: -2*2 - 0.75 = -4.75; id4: 1.5 - 0.75.
  EXPECT_THAT(
      Penalized({.repeat_penalty = 2.0f, .presence_penalty = 0.5f, .frequency_penalty = 0.25f},
                kHistory),
      ElementsAre(0.0f, -4.75f, 1.0f, 0.5f, 0.75f));
}

TEST(PenaltiesTest, WindowIsTheLastRepeatLastNTokens) {
  // Window {0, 4}: id0 counted once, id1 outside the window.
  EXPECT_THAT(Penalized({.repeat_last_n = 2, .frequency_penalty = 1.0f}, kHistory),
              ElementsAre(1.0f, -2.0f, 1.0f, 0.5f, 2.0f));
  EXPECT_THAT(Penalized({.repeat_last_n = 0, .frequency_penalty = 1.0f}, kHistory),
              ElementsAre(2.0f, -2.0f, 1.0f, 0.5f, 3.0f));
  EXPECT_THAT(Penalized({.repeat_last_n = -1, .frequency_penalty = 1.0f}, kHistory),
              ElementsAre(0.0f, -3.0f, 1.0f, 0.5f, 2.0f));
}

TEST(PenaltiesTest, OutOfRangeHistoryIdsAreIgnored) {
  EXPECT_THAT(Penalized({.repeat_penalty = 2.0f}, {-1, 5, 1000}),
              ElementsAre(2.0f, -2.0f, 1.0f, 0.5f, 3.0f));
}

TEST(TemperatureTest, ScalesLogitsBeforeSoftmax) {
  std::vector<Candidate> c = MakeCandidates({0.0f, std::log(2.0f)});
  ComputeProbabilities(absl::MakeSpan(c), 1.0f);
  EXPECT_NEAR(c[0].p, 1.0 / 3, 1e-6);
  EXPECT_NEAR(c[1].p, 2.0 / 3, 1e-6);
  ComputeProbabilities(absl::MakeSpan(c), 0.5f);  // odds 2 -> 4
  EXPECT_NEAR(c[0].p, 1.0 / 5, 1e-6);
  EXPECT_NEAR(c[1].p, 4.0 / 5, 1e-6);
  ComputeProbabilities(absl::MakeSpan(c), 1e4f);  // nearly uniform
  EXPECT_NEAR(c[0].p, 0.5, 1e-4);
}

// Draws `n` tokens and compares frequencies with `expected` (indexed by id):
// every |freq - p| < 0.01 (about 3 standard errors at p = 0.5) and Pearson's
// chi-square below its 0.1% critical value. With a fixed seed the test is
// deterministic; the bounds say the draw is unbiased, not just repeatable.
void ExpectFrequencies(Sampler& sampler, const std::vector<float>& logits,
                       const std::vector<double>& expected, int n = 20000) {
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++counts[sampler.Sample(logits, {})];
  double chi2 = 0;
  int dof = -1;
  for (size_t id = 0; id < logits.size(); ++id) {
    const double freq = static_cast<double>(counts[id]) / n;
    EXPECT_NEAR(freq, expected[id], 0.01) << "id " << id;
    if (expected[id] == 0) {
      EXPECT_EQ(counts[id], 0) << "id " << id;
      continue;
    }
    const double e = expected[id] * n;
    chi2 += (counts[id] - e) * (counts[id] - e) / e;
    ++dof;
  }
  // Upper 0.1% points of chi-square with 1..5 degrees of freedom.
  constexpr double kCritical[] = {10.83, 13.82, 16.27, 18.47, 20.52};
  ASSERT_GE(dof, 1);
  ASSERT_LE(dof, 5);
  EXPECT_LT(chi2, kCritical[dof - 1]) << "dof " << dof;
}

std::vector<double> Softmax(const std::vector<float>& logits, float temperature) {
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp(logits[i] / temperature);
  for (double& x : p) x /= sum;
  return p;
}

TEST(SamplerFrequencyTest, MatchesSoftmax) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 0.5f, -1.0f};
  Sampler sampler(PlainParams(1.0f, 7));
  ExpectFrequencies(sampler, logits, Softmax(logits, 1.0f));
}

TEST(SamplerFrequencyTest, MatchesTemperedSoftmax) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 0.5f, -1.0f};
  Sampler hot(PlainParams(2.0f, 11));
  ExpectFrequencies(hot, logits, Softmax(logits, 2.0f));
  Sampler cold(PlainParams(0.5f, 12));
  ExpectFrequencies(cold, logits, Softmax(logits, 0.5f));
}

TEST(SamplerFrequencyTest, TopKRenormalizesOverSurvivors) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 0.5f, -1.0f};
  Sampler sampler({.temperature = 0.8f, .top_k = 3, .top_p = 1.0f, .seed = 13});
  // Survivors are ids 1, 2, 3; ids 0 and 4 must never be drawn.
  const std::vector<double> kept = Softmax({1.0f, 2.0f, 0.5f}, 0.8f);
  ExpectFrequencies(sampler, logits, {0, kept[0], kept[1], kept[2], 0});
}

TEST(SamplerTest, TruncationUsesTemperatureOneProbabilities) {
  // p = {0.5, 0.3, 0.2}: top_p 0.7 keeps ids {0, 1}. Were temperature 100
  // applied first, all three (~1/3 each) would be needed to reach 0.7.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Sampler sampler({.temperature = 100.0f, .top_k = 0, .top_p = 0.7f, .seed = 5});
  std::vector<int> counts(3, 0);
  for (int i = 0; i < 2000; ++i) ++counts[sampler.Sample(logits, {})];
  EXPECT_EQ(counts[2], 0);
  EXPECT_NEAR(counts[0] / 2000.0, 0.5, 0.05);
}

TEST(SamplerTest, FullVocabDefaultsAndTopPOnly) {
  const std::vector<float> logits = RandomLogits(151936, 9, /*integer_valued=*/false);
  for (const SamplingParams& params :
       {SamplingParams{.seed = 1}, SamplingParams{.top_k = 0, .seed = 2},
        SamplingParams{.top_k = 0, .top_p = 1.0f, .min_p = 0.05f, .seed = 3}}) {
    Sampler sampler(params);
    std::vector<float> copy = logits;
    std::vector<Candidate> allowed = MakeCandidates(copy);
    ApplyTopK(params.top_k, &allowed);
    ApplyTopP(params.top_p, &allowed);
    ApplyMinP(params.min_p, &allowed);
    std::vector<int32_t> ids = Ids(allowed);
    std::sort(ids.begin(), ids.end());
    for (int i = 0; i < 20; ++i) {
      const int32_t t = sampler.Sample(logits, {});
      EXPECT_TRUE(std::binary_search(ids.begin(), ids.end(), t)) << t;
    }
  }
}

}  // namespace
}  // namespace st
