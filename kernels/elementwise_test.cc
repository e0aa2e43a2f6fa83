// AddTo / AddScaledTo against their scalar twins on every target, bit for
// bit (memcmp), at odd lengths for the tails, with values whose product and
// sum round differently when fused: the result must be the unfused one,
// checked by hand in double.
#include "kernels/elementwise.h"

#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/test_util.h"

namespace st {
namespace {

TEST(ElementwiseTest, EqualTheScalarTwinsOnEveryTarget) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> x(1029), y0(1029);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = normal(rng);
    y0[i] = normal(rng);
  }
  for (size_t n : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{33}, x.size()}) {
    std::vector<float> want_add(y0.begin(), y0.begin() + n), want_scaled = want_add;
    scalar::AddTo(x.data(), want_add.data(), n);
    scalar::AddScaledTo(0.3137f, x.data(), want_scaled.data(), n);
    st::testing::ForEachTarget([&] {
      std::vector<float> add(y0.begin(), y0.begin() + n), scaled = add;
      AddTo(x.data(), add.data(), n);
      AddScaledTo(0.3137f, x.data(), scaled.data(), n);
      if (n == 0) return;  // empty vectors' data() is null: no memcmp
      EXPECT_EQ(std::memcmp(add.data(), want_add.data(), n * sizeof(float)), 0) << n;
      EXPECT_EQ(std::memcmp(scaled.data(), want_scaled.data(), n * sizeof(float)), 0) << n;
    });
  }
}

// w * w = 1 + 2^-22 + 2^-46 exactly; rounded to float it is 1 + 2^-22, so
// y + w * w with y = -(1 + 2^-22) is 0 unfused, but 2^-46 with an FMA.
TEST(ElementwiseTest, AddScaledIsNotFused) {
  const float w = 1.0f + 0x1p-23f;
  std::vector<float> x(37, w), y(37, -(1.0f + 0x1p-22f));
  st::testing::ForEachTarget([&] {
    std::vector<float> out = y;
    AddScaledTo(w, x.data(), out.data(), out.size());
    for (float v : out) EXPECT_EQ(v, 0.0f);
  });
}

}  // namespace
}  // namespace st
