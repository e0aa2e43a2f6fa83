// QuantizeQ8_0Blocks (SIMD) against its scalar twin (QuantizeRow plus sums)
// on every compiled target: bit-identical blocks, scales and sums for random
// rows of several magnitudes, exact .5 ties, zeros, subnormals, infinities
// and NaNs.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/quant.h"
#include "kernels/test_util.h"

namespace st {
namespace {

using ::st::testing::ForEachTarget;
using ::st::testing::Gaussian;

void ExpectTwins(const std::vector<float>& x) {
  const size_t nb = x.size() / kQK;
  std::vector<BlockQ8_0> want(nb), got(nb);
  std::vector<float> want_s(nb), got_s(nb);
  std::vector<int32_t> want_sum(nb), got_sum(nb);
  scalar::QuantizeQ8_0Blocks(x.data(), x.size(), want.data(), want_s.data(), want_sum.data());
  ForEachTarget([&] {
    std::memset(got.data(), 0x5A, nb * sizeof(BlockQ8_0));
    QuantizeQ8_0Blocks(x.data(), x.size(), got.data(), got_s.data(), got_sum.data());
    for (size_t b = 0; b < nb; ++b) {
      SCOPED_TRACE(::testing::Message() << "block " << b);
      ASSERT_EQ(got[b].d, want[b].d);
      ASSERT_EQ(std::memcmp(got[b].qs, want[b].qs, kQK), 0);
      ASSERT_EQ(std::memcmp(&got_s[b], &want_s[b], sizeof(float)), 0);
      ASSERT_EQ(got_sum[b], want_sum[b]);
    }
  });
}

TEST(QuantQ8SimdTest, RandomRowsEqualScalarTwin) {
  for (float stddev : {1e-3f, 1.0f, 40.0f, 3e4f}) {
    ExpectTwins(Gaussian(1536, 7 + static_cast<uint32_t>(stddev), stddev));
  }
}

TEST(QuantQ8SimdTest, TiesAndSpecialValuesEqualScalarTwin) {
  std::vector<float> x(8 * kQK, 0.0f);  // block 0: all zero
  // Block 1: amax 127, so id = 1 and x * id = x: exact .5 ties both signs.
  for (size_t j = 0; j < kQK; ++j) x[kQK + j] = (j % 2 ? -1.0f : 1.0f) * (0.5f + j);
  x[kQK] = 127.0f;
  // Block 2: subnormals (d underflows, id may overflow to inf).
  for (size_t j = 0; j < kQK; ++j) x[2 * kQK + j] = 1e-41f * static_cast<float>(j);
  // Block 3: one infinity among finite values; block 4: NaNs among finite.
  for (size_t j = 0; j < kQK; ++j) x[3 * kQK + j] = x[4 * kQK + j] = 0.25f * j - 3.0f;
  x[3 * kQK + 5] = std::numeric_limits<float>::infinity();
  x[4 * kQK + 1] = x[4 * kQK + 30] = std::numeric_limits<float>::quiet_NaN();
  // Block 5: -inf and NaN only; block 6: largest floats; block 7: -0.0f.
  for (size_t j = 0; j < kQK; ++j) {
    x[5 * kQK + j] = j % 2 ? -std::numeric_limits<float>::infinity()
                           : std::numeric_limits<float>::quiet_NaN();
    x[6 * kQK + j] = (j % 3 ? 1.0f : -1.0f) * std::numeric_limits<float>::max() / (1 + j);
    x[7 * kQK + j] = -0.0f;
  }
  ExpectTwins(x);
}

}  // namespace
}  // namespace st
