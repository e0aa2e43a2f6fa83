// Q4_0 / Q8_0 quantizers (bit-exact ggml reference behaviour on hand-made
// blocks) and round-trip error bounds for every type.
#include "kernels/quant.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/fp16.h"
#include "kernels/test_util.h"

namespace st {
namespace {

using ::st::testing::Gaussian;

// x[j] = j - 16: amax 16 at j = 0 (negative), so Q4_0 d = -16 / -8 = 2.
std::vector<float> Ramp() {
  std::vector<float> x(kQK);
  for (size_t j = 0; j < kQK; ++j) x[j] = static_cast<float>(j) - 16.0f;
  return x;
}

TEST(QuantTest, Q4_0HandComputedBlock) {
  const std::vector<float> x = Ramp();
  BlockQ4_0 b;
  QuantizeRow(DType::kQ4_0, x.data(), &b, kQK);
  EXPECT_EQ(b.d, F32ToF16(2.0f));
  // q = min(15, trunc(x / 2 + 8.5)); element i -> low nibble of qs[i],
  // element i + 16 -> high nibble.
  EXPECT_EQ(b.qs[0], 0x80);   // x=-16 -> 0 ; x=0 -> 8
  EXPECT_EQ(b.qs[1], 0x91);   // x=-15 -> trunc(1.0)=1 ; x=1 -> trunc(9.0)=9
  EXPECT_EQ(b.qs[2], 0x91);   // x=-14 -> trunc(1.5)=1 ; x=2 -> trunc(9.5)=9
  EXPECT_EQ(b.qs[13], 0xF7);  // x=-3 -> 7 ; x=13 -> trunc(15.0)=15
  EXPECT_EQ(b.qs[15], 0xF8);  // x=-1 -> trunc(8.0)=8 ; x=15 -> min(15, 16)=15
  std::vector<float> y(kQK);
  DequantizeRow(DType::kQ4_0, &b, y.data(), kQK);
  EXPECT_EQ(y[0], -16.0f);
  EXPECT_EQ(y[31], 14.0f);  // clamped: (15 - 8) * 2
  EXPECT_EQ(y[17], 2.0f);   // 1 rounds half up to 2 * 1
}

TEST(QuantTest, Q4_0RoundsHalfUp) {
  std::vector<float> x(kQK, 0.0f);
  x[0] = -8.0f;  // d = 1, id = 1
  x[1] = 0.5f;   // 9.0 -> 9 -> +1
  x[2] = -0.5f;  // 8.0 -> 8 -> 0
  x[3] = 1.5f;   // 10.0 -> +2
  x[4] = -1.5f;  // 7.0 -> -1
  BlockQ4_0 b;
  QuantizeRow(DType::kQ4_0, x.data(), &b, kQK);
  std::vector<float> y(kQK);
  DequantizeRow(DType::kQ4_0, &b, y.data(), kQK);
  EXPECT_EQ(y[1], 1.0f);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_EQ(y[3], 2.0f);
  EXPECT_EQ(y[4], -1.0f);
}

TEST(QuantTest, Q8_0HandComputedBlock) {
  const std::vector<float> x = Ramp();
  BlockQ8_0 b;
  QuantizeRow(DType::kQ8_0, x.data(), &b, kQK);
  EXPECT_EQ(b.d, F32ToF16(16.0f / 127.0f));
  EXPECT_EQ(b.qs[0], -127);
  EXPECT_EQ(b.qs[15], -8);   // -1 * 7.9375 = -7.9375
  EXPECT_EQ(b.qs[16], 0);
  EXPECT_EQ(b.qs[17], 8);
  EXPECT_EQ(b.qs[31], 119);  // 15 * 7.9375 = 119.0625
}

TEST(QuantTest, Q8_0RoundsHalfAwayFromZero) {  // roundf, as ggml; not RNE
  std::vector<float> x(kQK, 0.0f);
  x[0] = 127.0f;  // d = 1
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 0.5f;
  BlockQ8_0 b;
  QuantizeRow(DType::kQ8_0, x.data(), &b, kQK);
  EXPECT_EQ(b.d, F32ToF16(1.0f));
  EXPECT_EQ(b.qs[1], 3);
  EXPECT_EQ(b.qs[2], -3);
  EXPECT_EQ(b.qs[3], 1);
}

TEST(QuantTest, ZeroBlocks) {
  const std::vector<float> x(2 * kQK, 0.0f);
  BlockQ4_0 b4[2];
  BlockQ8_0 b8[2];
  QuantizeRow(DType::kQ4_0, x.data(), b4, 2 * kQK);
  QuantizeRow(DType::kQ8_0, x.data(), b8, 2 * kQK);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(b4[i].d, 0x8000);  // ggml: d = 0 / -8 = -0.0f
    EXPECT_EQ(b8[i].d, 0);
    for (size_t j = 0; j < kQK / 2; ++j) EXPECT_EQ(b4[i].qs[j], 0x88);
    for (size_t j = 0; j < kQK; ++j) EXPECT_EQ(b8[i].qs[j], 0);
  }
}

// Round-trip bounds per element, with d = the exact float scale the
// quantizer used, d16 = the stored fp16 scale and q the integer level:
//   Q8_0: |x - q d16| <= d/2 + |q| |d - d16|           (+ 1e-6 |x| slack)
//   Q4_0: |x - (q-8) d16| <= |d|/2 + |q-8| |d - d16|   (+ slack), except
//         values with x/d in (7.5, 8] (opposite sign to the block maximum,
//         clamped to level 15) where the bound is |d| + 7 |d - d16|.
TEST(QuantTest, RoundTripBounds) {
  const size_t n = 4096 + 64;
  std::vector<float> x = Gaussian(n, 99, 3.0f);
  x[5] = -x[0];  // force exact opposite-sign extremes into some blocks
  std::vector<BlockQ8_0> q8(n / kQK);
  std::vector<BlockQ4_0> q4(n / kQK);
  std::vector<float> y8(n), y4(n);
  QuantizeRow(DType::kQ8_0, x.data(), q8.data(), n);
  QuantizeRow(DType::kQ4_0, x.data(), q4.data(), n);
  DequantizeRow(DType::kQ8_0, q8.data(), y8.data(), n);
  DequantizeRow(DType::kQ4_0, q4.data(), y4.data(), n);
  for (size_t b = 0; b < n / kQK; ++b) {
    const float* xb = x.data() + b * kQK;
    float amax = 0.0f, max = 0.0f;
    for (size_t j = 0; j < kQK; ++j) {
      if (std::fabs(xb[j]) > amax) amax = std::fabs(xb[j]), max = xb[j];
    }
    const double d8 = amax / 127.0f, d8h = F16ToF32(q8[b].d);
    const double d4 = max / -8.0f, d4h = F16ToF32(q4[b].d);
    for (size_t j = 0; j < kQK; ++j) {
      const size_t i = b * kQK + j;
      const double e8 = std::fabs(x[i] - y8[i]);
      EXPECT_LE(e8, 0.5 * d8 + 127 * std::fabs(d8 - d8h) + 1e-6 * std::fabs(x[i])) << i;
      const double e4 = std::fabs(x[i] - y4[i]);
      const double lvl = std::fabs(y4[i] / d4h);
      const bool clamped = x[i] / d4 > 7.5;
      const double bound4 = clamped ? std::fabs(d4) + 7 * std::fabs(d4 - d4h)
                                    : 0.5 * std::fabs(d4) + lvl * std::fabs(d4 - d4h);
      EXPECT_LE(e4, bound4 + 1e-6 * std::fabs(x[i])) << i;
    }
  }
}

TEST(QuantTest, FloatTypesRoundTrip) {
  const size_t n = 1000;
  const std::vector<float> x = Gaussian(n, 5, 10.0f);
  std::vector<char> buf(4 * n);
  std::vector<float> y(n);
  QuantizeRow(DType::kF32, x.data(), buf.data(), n);
  DequantizeRow(DType::kF32, buf.data(), y.data(), n);
  EXPECT_EQ(x, y);
  QuantizeRow(DType::kF16, x.data(), buf.data(), n);
  DequantizeRow(DType::kF16, buf.data(), y.data(), n);
  for (size_t j = 0; j < n; ++j) ASSERT_EQ(y[j], F16ToF32(F32ToF16(x[j])));
  for (size_t j = 0; j < n; ++j) ASSERT_LE(std::fabs(y[j] - x[j]), std::ldexp(std::fabs(x[j]), -11));
  QuantizeRow(DType::kBF16, x.data(), buf.data(), n);
  DequantizeRow(DType::kBF16, buf.data(), y.data(), n);
  for (size_t j = 0; j < n; ++j) ASSERT_EQ(y[j], BF16ToF32(F32ToBF16(x[j])));
  for (size_t j = 0; j < n; ++j) ASSERT_LE(std::fabs(y[j] - x[j]), std::ldexp(std::fabs(x[j]), -8));
}

}  // namespace
}  // namespace st
