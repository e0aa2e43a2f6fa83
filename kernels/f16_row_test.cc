// F32ToF16Row against its scalar twin F32ToF16, on every dispatch target
// this CPU has: random floats over the whole half range and beyond, ties,
// subnormals, zeros, overflow, inf, and NaN (stays NaN), at odd lengths so
// the scalar tail runs too.
#include "kernels/f16_row.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/fp16.h"
#include "kernels/test_util.h"

namespace st {
namespace {

std::vector<float> Inputs() {
  std::mt19937 rng(5);
  std::vector<float> x;
  std::uniform_int_distribution<int> exp(-30, 17);  // subnormal halves .. past 65504
  std::uniform_real_distribution<float> mant(-2.0f, 2.0f);
  for (int i = 0; i < 20000; ++i) x.push_back(std::ldexp(mant(rng), exp(rng)));
  // Exact ties between two halves (the last kept bit even and odd), in the
  // normal and the subnormal range.
  for (uint32_t h = 0x0001; h < 0x7BFF; h += 97) {
    const float a = F16ToF32(static_cast<uint16_t>(h)), b = F16ToF32(static_cast<uint16_t>(h + 1));
    x.push_back(0.5f * (a + b));
    x.push_back(-0.5f * (a + b));
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (float v : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 1e9f, -1e9f, inf, -inf,
                  5.9604645e-8f, 2.9802322e-8f, 2.98023259e-8f, 1e-10f, -1e-10f}) {
    x.push_back(v);
  }
  return x;
}

TEST(F32ToF16RowTest, EqualsTheScalarTwinOnEveryTarget) {
  const std::vector<float> x = Inputs();
  st::testing::ForEachTarget([&] {
    for (size_t n : {x.size(), size_t{1}, size_t{7}, size_t{17}, size_t{33}}) {
      std::vector<uint16_t> out(n);
      F32ToF16Row(x.data(), n, out.data());
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], F32ToF16(x[i])) << "x=" << x[i] << " i=" << i;
    }
  });
}

TEST(F32ToF16RowTest, NanStaysNan) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x(37, 1.0f);
  x[3] = nan;
  x[20] = -nan;
  x[36] = nan;
  st::testing::ForEachTarget([&] {
    std::vector<uint16_t> out(x.size());
    F32ToF16Row(x.data(), x.size(), out.data());
    for (size_t i : {3, 20, 36}) EXPECT_TRUE(std::isnan(F16ToF32(out[i]))) << i;
    EXPECT_EQ(out[0], F32ToF16(1.0f));
  });
}

}  // namespace
}  // namespace st
