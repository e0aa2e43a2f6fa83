// SparsePhases gives ExpertFfn's numbers bit for bit (the pack's layout:
// packed gate, up and down^T in rows; Q4_0 up rows also in the split
// layout), for any thread count, token count and mix of experts, and writes
// exactly the slots it is given.
#include "model/sparse_phases.h"

#include <cmath>
#include <cstring>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/packed_matrix.h"
#include "kernels/quant.h"
#include "kernels/split_rows.h"
#include "kernels/test_util.h"

namespace st {
namespace {

struct PackExpert {
  std::vector<uint8_t> gate, up, down;  // gate packed; up, down^T [d_expert, d_model]
  ExpertMatrices m;

  PackExpert(DType t, size_t dm, size_t de, uint32_t seed, bool split = false) {
    auto make = [&](uint32_t s, std::vector<uint8_t>& q) {
      const std::vector<float> w = st::testing::Gaussian(de * dm, s, 1.0f / std::sqrt(float(dm)));
      const size_t rb = RowBytes(t, dm);
      q.resize(rb * de);
      for (size_t r = 0; r < de; ++r) QuantizeRow(t, &w[r * dm], q.data() + r * rb, dm);
    };
    std::vector<uint8_t> gate_rows;
    make(seed, gate_rows);
    gate.resize(gate_rows.size());
    PackRows(t, gate_rows.data(), de, dm, gate.data());
    make(seed + 1, up);
    if (split) {
      const std::vector<uint8_t> plain = up;
      for (size_t r = 0; r < de; ++r) {
        SplitQ4_0Row(&plain[r * RowBytes(t, dm)], dm, &up[r * RowBytes(t, dm)]);
      }
    }
    make(seed + 2, down);
    m.gate = MatrixRef{t, nullptr, de, dm, gate.data()};
    m.up = MatrixRef{t, up.data(), de, dm};
    m.up.split_rows = split;
    m.down = MatrixRef{t, down.data(), de, dm};
    m.down_transposed = true;
  }
};

// (type, up rows split)
class SparsePhasesTest : public ::testing::TestWithParam<std::tuple<DType, bool>> {};

TEST_P(SparsePhasesTest, EqualsExpertFfnBitForBit) {
  const auto [type, split] = GetParam();
  if (!CanPack(type, 16, 32)) GTEST_SKIP() << "no packed kernels on this CPU";
  // d_model: 5 column items of 256 with a partial last one (split: 9 whole
  // 4-block runs, the AVX-512 split kernel's width); d_expert: two 128-row
  // items and a partial third (multiple of 16).
  const size_t dm = split ? 1152 : 1120, de = 304;
  const int top_k = 3, n_experts = 4;
  std::vector<PackExpert> all;
  for (int e = 0; e < n_experts; ++e) all.emplace_back(type, dm, de, 100 + 7 * e, split);
  ASSERT_TRUE(SparsePhases::Supports(all[0].m));

  ThreadPool pool2(2), pool3(3);
  SparsePhases phases;  // reused across calls, as the executors do
  // 11: more than one DotRowsMulti chunk; 3 after it: scratch grown by a
  // larger call is reused.
  for (int n_tokens : {1, 2, 7, 11, 3}) {
    SCOPED_TRACE(n_tokens);
    const std::vector<float> h = st::testing::Gaussian(n_tokens * dm, 9 + n_tokens);
    // Slots: token t, choice j -> expert (t + j * (1 + t % 2)) % n_experts.
    std::vector<std::vector<int>> by_expert(n_experts);
    for (int t = 0; t < n_tokens; ++t) {
      for (int j = 0; j < top_k; ++j) by_expert[(t + j * (1 + t % 2)) % n_experts].push_back(t * top_k + j);
    }
    std::vector<ExpertMatrices> ms;
    std::vector<const std::vector<int>*> slots;
    for (int e = n_experts - 1; e >= 0; --e) {  // any order of experts
      if (by_expert[e].empty()) continue;
      ms.push_back(all[e].m);
      slots.push_back(&by_expert[e]);
    }
    // Reference: ExpertFfn per expert.
    const size_t n_slots = size_t(n_tokens) * top_k;
    std::vector<float> want(n_slots * dm, NAN);
    FfnSparsity want_sp;
    for (size_t k = 0; k < ms.size(); ++k) {
      const std::vector<int>& sl = *slots[k];
      std::vector<float> x(sl.size() * dm), y(sl.size() * dm);
      GatherSlotRows(h.data(), sl, top_k, dm, x.data());
      ExpertFfn(ms[k], x.data(), int(sl.size()), y.data(), &pool3, &want_sp);
      ScatterSlotRows(y.data(), sl, dm, want.data());
    }
    for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
      std::vector<float> got(n_slots * dm, NAN);
      FfnSparsity sp;
      phases.Run(ms, slots, top_k, h.data(), n_tokens, got.data(), pool, &sp);
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
      EXPECT_EQ(sp.active_rows, want_sp.active_rows);
      EXPECT_EQ(sp.total_rows, want_sp.total_rows);
      EXPECT_GT(sp.active_fraction(), 0.3);
      EXPECT_LT(sp.active_fraction(), 0.7);
      EXPECT_EQ(sp.read_rows, 2 * sp.active_rows) << "up and down^T rows only where z != 0";
      EXPECT_DOUBLE_EQ(sp.read_fraction(), sp.active_fraction());
    }
    // One expert per call, as the cached executor passes experts whose
    // reads land late: each call quantizes only the tokens it uses.
    std::vector<float> got(n_slots * dm, NAN);
    for (size_t k = 0; k < ms.size(); ++k) {
      phases.Run({ms[k]}, {slots[k]}, top_k, h.data(), n_tokens, got.data(), &pool2, nullptr);
    }
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
  }
}

TEST_P(SparsePhasesTest, SupportsOnlyThePackLayout) {
  const auto [type, split] = GetParam();
  if (!CanPack(type, 16, 32)) GTEST_SKIP() << "no packed kernels on this CPU";
  PackExpert e(type, 64, 32, 1, split);
  ExpertMatrices m = e.m;
  EXPECT_TRUE(SparsePhases::Supports(m));
  m.up.split_rows = true;
  EXPECT_EQ(SparsePhases::Supports(m), type == DType::kQ4_0) << "split rows are Q4_0 only";
  m = e.m;
  m.down_transposed = false;
  EXPECT_FALSE(SparsePhases::Supports(m));
  m = e.m;
  m.gate.packed = nullptr;
  m.gate.data = e.gate.data();
  EXPECT_FALSE(SparsePhases::Supports(m));
}

INSTANTIATE_TEST_SUITE_P(Types, SparsePhasesTest,
                         ::testing::Values(std::make_tuple(DType::kQ4_0, false),
                                           std::make_tuple(DType::kQ8_0, false),
                                           std::make_tuple(DType::kQ4_0, true)));

}  // namespace
}  // namespace st
