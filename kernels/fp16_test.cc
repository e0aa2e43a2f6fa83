// F16 / BF16 scalar conversions (kernels/fp16.h): exhaustive half -> float,
// round trips, rounding ties, subnormals, overflow, inf and NaN. The
// float -> half direction is also checked against the compiler's _Float16
// conversion (libgcc, round-to-nearest-even) as an independent oracle.
#include "kernels/fp16.h"

#include <cmath>
#include <cstring>
#include <random>

#include "gtest/gtest.h"

namespace st {
namespace {

double HalfValue(uint16_t h) {  // independent decode of binary16
  const int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
  double v = exp == 0 ? std::ldexp(man, -24) : std::ldexp(1024 + man, exp - 25);
  if (exp == 31) v = man ? NAN : INFINITY;
  return sign ? -v : v;
}

TEST(Fp16Test, HalfToFloatExhaustive) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double want = HalfValue(static_cast<uint16_t>(h));
    const float got = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      ASSERT_EQ(static_cast<double>(got), want) << "h=" << h;
      EXPECT_EQ(std::signbit(got), (h & 0x8000) != 0) << h;  // -0 stays -0
    }
  }
}

TEST(Fp16Test, RoundTripEveryNonNanHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) {
      const uint16_t back = F32ToF16(F16ToF32(static_cast<uint16_t>(h)));
      EXPECT_TRUE((back & 0x7C00) == 0x7C00 && (back & 0x3FF)) << "NaN lost: " << h;
      continue;
    }
    ASSERT_EQ(F32ToF16(F16ToF32(static_cast<uint16_t>(h))), h);
  }
}

TEST(Fp16Test, FloatToHalfTiesAndEdges) {
  EXPECT_EQ(F32ToF16(1.0f), 0x3C00);
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie -> even (down)
  EXPECT_EQ(F32ToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie -> even (up)
  EXPECT_EQ(F32ToF16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3C01);
  // Subnormal results: min subnormal is 2^-24.
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);      // tie -> even 0
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -25)), 0x0002);      // tie -> even 2
  EXPECT_EQ(F32ToF16(std::ldexp(1.0001f, -25)), 0x0001);   // above tie
  EXPECT_EQ(F32ToF16(-std::ldexp(1.0f, -26)), 0x8000);     // -0
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)), 0x0400);  // into normal
  // Overflow: 65504 is the max; 65520 and above round to inf.
  EXPECT_EQ(F32ToF16(65504.0f), 0x7BFF);
  EXPECT_EQ(F32ToF16(65519.996f), 0x7BFF);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7C00);
  EXPECT_EQ(F32ToF16(-1e10f), 0xFC00);
  EXPECT_EQ(F32ToF16(INFINITY), 0x7C00);
  EXPECT_EQ(F32ToF16(-INFINITY), 0xFC00);
  const uint16_t nan = F32ToF16(NAN);
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x3FF, 0);
}

// The compiler's own IEEE half, converting with round-to-nearest-even: GCC
// 12 has no _Float16 in C++ on AArch64, where __fp16 is that type.
#if defined(__aarch64__)
using CompilerHalf = __fp16;
#define ST_HAVE_COMPILER_HALF 1
#elif defined(__FLT16_MAX__)
using CompilerHalf = _Float16;
#define ST_HAVE_COMPILER_HALF 1
#endif

#if defined(ST_HAVE_COMPILER_HALF)
TEST(Fp16Test, FloatToHalfMatchesCompilerFloat16) {
  std::mt19937 rng(123);
  // Exponents concentrated around the half range, plus fully random bits.
  for (int i = 0; i < 2000000; ++i) {
    uint32_t bits = rng();
    if (i % 2) bits = (bits & 0x807FFFFFu) | ((100u + rng() % 50u) << 23);
    const float f = Bits2F32(bits);
    if (std::isnan(f)) continue;
    const CompilerHalf h = static_cast<CompilerHalf>(f);
    uint16_t want;
    std::memcpy(&want, &h, 2);
    ASSERT_EQ(F32ToF16(f), want) << "bits=0x" << std::hex << bits;
  }
}
#endif

TEST(Fp16Test, BFloat16) {
  EXPECT_EQ(F32ToBF16(1.0f), 0x3F80);
  EXPECT_EQ(F32ToBF16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);      // tie -> even
  EXPECT_EQ(F32ToBF16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);  // tie -> even
  EXPECT_EQ(F32ToBF16(std::nextafter(1.0f + std::ldexp(1.0f, -8), 2.0f)), 0x3F81);
  EXPECT_EQ(F32ToBF16(INFINITY), 0x7F80);
  EXPECT_EQ(F32ToBF16(-INFINITY), 0xFF80);
  EXPECT_EQ(F32ToBF16(3.4e38f), 0x7F80);  // above the largest bf16: rounds to inf
  EXPECT_TRUE(std::isnan(BF16ToF32(F32ToBF16(NAN))));
  EXPECT_TRUE(std::isnan(BF16ToF32(F32ToBF16(Bits2F32(0x7F800001u)))));  // low-bit NaN stays NaN
  EXPECT_EQ(F32ToBF16(Bits2F32(0x00010000u)), 0x0001);                    // f32 subnormal
  EXPECT_EQ(F32ToBF16(Bits2F32(0x00008000u)), 0x0000);                    // tie -> even 0
  EXPECT_EQ(BF16ToF32(0xC040), -3.0f);
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = BF16ToF32(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToBF16(f), b);
  }
}

}  // namespace
}  // namespace st
