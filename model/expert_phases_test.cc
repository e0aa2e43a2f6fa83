// ExpertPhases gives every slot exactly what ExpertFfn gives for that
// expert and token (packed Q4_0 / Q8_0 stacks), for batches of 1..12 tokens,
// with and without a pool, and counts the same active rows; so does the
// per-expert form with explicit slot rows (expert workers).
#include "model/expert_phases.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/packed_matrix.h"
#include "kernels/quant.h"
#include "kernels/test_util.h"

namespace st {
namespace {

// n_experts stacked [rows, cols] matrices, quantized, and their packed copy.
struct Stack {
  std::vector<uint8_t> rows, packed;
  MatrixRef ref;
  Stack(DType t, size_t n_rows, size_t cols, uint32_t seed) {
    const std::vector<float> w = st::testing::Gaussian(n_rows * cols, seed, 1.0f / std::sqrt(cols));
    const size_t rb = RowBytes(t, cols);
    rows.resize(rb * n_rows);
    packed.resize(rb * n_rows);
    for (size_t r = 0; r < n_rows; ++r) QuantizeRow(t, &w[r * cols], rows.data() + r * rb, cols);
    PackRows(t, rows.data(), n_rows, cols, packed.data());
    ref = {t, rows.data(), n_rows, cols, packed.data()};
  }
};

class ExpertPhasesTest : public ::testing::TestWithParam<DType> {};

TEST_P(ExpertPhasesTest, SlotsEqualExpertFfn) {
  const DType type = GetParam();
  const int n_experts = 6, top_k = 2;
  const size_t d_model = 288, d_expert = 160;  // several work items each phase, a partial last one
  if (!CanPack(type, d_expert, d_model) || !CanPack(type, d_model, d_expert)) {
    GTEST_SKIP() << "no packed kernels on this CPU";
  }
  Stack gate(type, n_experts * d_expert, d_model, 1), up(type, n_experts * d_expert, d_model, 2),
      down(type, n_experts * d_model, d_expert, 3);
  ExpertStacks s{gate.ref, up.ref, down.ref, n_experts, false};
  ASSERT_TRUE(ExpertPhases::Supports(s));
  ThreadPool pool(3);
  ExpertPhases phases;
  std::mt19937 rng(7);
  for (int n_tokens : {1, 2, 5, 12}) {
    const std::vector<float> h =
        st::testing::Gaussian(static_cast<size_t>(n_tokens) * d_model, 10 + n_tokens, 1.0f);
    std::vector<std::vector<int>> by_expert(n_experts);
    for (int t = 0; t < n_tokens; ++t) {
      std::vector<int> ids(n_experts);
      for (int e = 0; e < n_experts; ++e) ids[e] = e;
      std::shuffle(ids.begin(), ids.end(), rng);
      for (int j = 0; j < top_k; ++j) by_expert[ids[j]].push_back(t * top_k + j);
    }
    std::vector<int> used;
    for (int e = n_experts - 1; e >= 0; --e) {
      if (!by_expert[e].empty()) used.push_back(e);
    }
    // Reference: ExpertFfn per expert on its gathered rows.
    std::vector<float> want(static_cast<size_t>(n_tokens) * top_k * d_model, -1.0f);
    FfnSparsity want_sparsity;
    for (int e : used) {
      const std::vector<int>& slots = by_expert[e];
      std::vector<float> x(slots.size() * d_model), y(slots.size() * d_model);
      for (size_t i = 0; i < slots.size(); ++i) {
        std::memcpy(&x[i * d_model], &h[(slots[i] / top_k) * d_model], d_model * sizeof(float));
      }
      ExpertFfn({ExpertStacks::Slice(s.gate, e, n_experts), ExpertStacks::Slice(s.up, e, n_experts),
                 ExpertStacks::Slice(s.down, e, n_experts), false},
                x.data(), static_cast<int>(slots.size()), y.data(), nullptr, &want_sparsity);
      for (size_t i = 0; i < slots.size(); ++i) {
        std::memcpy(&want[slots[i] * d_model], &y[i * d_model], d_model * sizeof(float));
      }
    }
    for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
      std::vector<float> got(want.size(), -1.0f);
      FfnSparsity sparsity;
      phases.Run(s, by_expert, used, top_k, h.data(), n_tokens, got.data(), p, &sparsity);
      ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
          << "n_tokens " << n_tokens << (p ? " pool" : " no pool");
      EXPECT_EQ(sparsity.active_rows, want_sparsity.active_rows);
      EXPECT_EQ(sparsity.total_rows, want_sparsity.total_rows);
      EXPECT_EQ(sparsity.read_rows, 2 * sparsity.total_rows) << "packed up and down: every row";
      EXPECT_EQ(sparsity.read_fraction(), 1.0);
      // An expert worker's form: experts one by one, and each slot's row
      // named explicitly (here the rows are in reverse token order).
      std::vector<float> reversed(h.size());
      std::vector<int32_t> slot_rows(static_cast<size_t>(n_tokens) * top_k);
      for (int t = 0; t < n_tokens; ++t) {
        std::memcpy(&reversed[(n_tokens - 1 - t) * d_model], &h[t * d_model],
                    d_model * sizeof(float));
        for (int j = 0; j < top_k; ++j) slot_rows[t * top_k + j] = n_tokens - 1 - t;
      }
      auto matrices = [&](int e) {
        ExpertMatrices m{ExpertStacks::Slice(s.gate, e, n_experts),
                         ExpertStacks::Slice(s.up, e, n_experts),
                         ExpertStacks::Slice(s.down, e, n_experts), false};
        EXPECT_TRUE(ExpertPhases::Supports(m));
        return m;
      };
      std::fill(got.begin(), got.end(), -1.0f);
      phases.Run(matrices, by_expert, used, top_k, slot_rows.data(), reversed.data(), n_tokens,
                 got.data(), p, nullptr);
      ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
          << "per-expert matrices, n_tokens " << n_tokens << (p ? " pool" : " no pool");
    }
  }
}

TEST(ExpertPhasesSupports, NeedsPackedNonTransposedStacks) {
  Stack gate(DType::kQ8_0, 2 * 32, 64, 1);
  ExpertStacks s{gate.ref, gate.ref, gate.ref, 2, false};
  s.down.rows = 2 * 64;
  s.down.cols = 32;
  // The layout, not the CPU, decides (Stack packs on any CPU; where CanPack
  // is false the model never packs, so the phases never see such stacks).
  EXPECT_TRUE(ExpertPhases::Supports(s));
  s.down_transposed = true;
  EXPECT_FALSE(ExpertPhases::Supports(s));
  s.down_transposed = false;
  s.up.packed = nullptr;
  EXPECT_FALSE(ExpertPhases::Supports(s));
}

INSTANTIATE_TEST_SUITE_P(Types, ExpertPhasesTest, ::testing::Values(DType::kQ4_0, DType::kQ8_0));

}  // namespace
}  // namespace st
