// The synthetic models' quantizers write blocks the engine's dequantizers
// (checked against ggml's in kernels/ggml_storage_test.cc) read back as the
// input, within each format's rounding.
#include "model/synth_quant.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/ggml_storage.h"

namespace st {
namespace {

struct Case {
  uint32_t ggml_type;
  double max_rel_rms;  // RMS error over RMS of the input
};

class SynthQuantTest : public ::testing::TestWithParam<Case> {};

TEST_P(SynthQuantTest, RoundTripsWithinTheFormatsRounding) {
  const Case& c = GetParam();
  const StorageFormat* f = FindStorageFormat(c.ggml_type);
  ASSERT_NE(f, nullptr);
  constexpr size_t kN = 1024;
  std::vector<float> x(kN);
  // Uneven blocks: an outlier, a constant-offset stretch, an all-zero block.
  for (size_t i = 0; i < kN; ++i) x[i] = std::sin(0.7f * i) + 0.3f * std::cos(0.013f * i * i);
  x[37] = 9.0f;
  for (size_t i = 300; i < 400; ++i) x[i] = 2.0f + 0.01f * std::sin(0.1f * i);
  std::fill(x.begin() + 512, x.begin() + 768, 0.0f);
  const size_t bytes = SynthRowBytes(c.ggml_type, kN);
  ASSERT_EQ(bytes, kN / f->block_elems * f->block_bytes);
  std::vector<uint8_t> q(bytes);
  SynthQuantizeRow(c.ggml_type, x.data(), q.data(), kN);
  std::vector<float> y(kN);
  f->dequantize(q.data(), y.data(), kN);
  double err = 0, mag = 0;
  for (size_t i = 0; i < kN; ++i) {
    ASSERT_TRUE(std::isfinite(y[i])) << i;
    err += (y[i] - x[i]) * (y[i] - x[i]);
    mag += x[i] * x[i];
  }
  EXPECT_LT(std::sqrt(err / mag), c.max_rel_rms) << f->name;
  for (size_t i = 512; i < 768; ++i) ASSERT_EQ(y[i], 0.0f) << f->name << " " << i;
  EXPECT_NEAR(y[37], 9.0f, 0.5f) << f->name << ": the outlier keeps its value";
}

INSTANTIATE_TEST_SUITE_P(Formats, SynthQuantTest,
                         ::testing::Values(Case{kGgmlQ4_K, 0.08}, Case{kGgmlQ6_K, 0.025},
                                           Case{kGgmlQ5_0, 0.06}),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           return std::string(FindStorageFormat(i.param.ggml_type)->name);
                         });

TEST(SynthQuantTest, TypesTheKernelsTakeAreQuantizedAsTheyAre) {
  EXPECT_EQ(SynthRowBytes(2, 64), 36u);   // Q4_0
  EXPECT_EQ(SynthRowBytes(8, 64), 68u);   // Q8_0
  EXPECT_EQ(SynthRowBytes(23, 256), 0u);  // IQ4_XS: none
}

}  // namespace
}  // namespace st
