// ExpF: e^x for float, computed by glibc's expf algorithm (since glibc 2.28;
// ARM's optimized-routines): x * 32 / ln 2 split into an integer k and a
// remainder r, 2^(k/32) from a 32-entry table, a cubic in r, all in double,
// rounded once to float. With the operations fused exactly as glibc's x86-64
// FMA build fuses them (its __expf_fma, disassembled from Debian 12's libm
// 2.36), the result equals that libm's expf bit for bit; |x| >= 88 and NaN
// (overflow, underflow, the special values) go to std::exp itself.
//
// It exists so that a SIMD kernel can compute e^x 8 lanes at a time and stay
// bit-identical to its scalar twin (attention's softmax): both use these
// constants and this order of operations (ExpF for the twin, the AVX-512
// version in attention_simd.cc for the kernel).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace st {
namespace expf_data {

// 2^(i/32) as IEEE doubles with i << 47 subtracted from the bits (glibc's
// __exp2f_data.tab), so that adding k << 47 scales by 2^(k/32) exactly.
inline constexpr uint64_t kTable[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540};
inline constexpr uint64_t kInvLn2N = 0x40471547652b82fe;  // 32 / ln 2
inline constexpr uint64_t kShift = 0x4338000000000000;    // 0x1.8p52: rounds to an integer
inline constexpr uint64_t kC0 = 0x3ebc6af84b912394;       // cubic in r, scaled by 1/32^i
inline constexpr uint64_t kC1 = 0x3f2ebfce50fac4f3;
inline constexpr uint64_t kC2 = 0x3f962e42ff0c52d6;

inline double AsDouble(uint64_t u) {
  double d;
  std::memcpy(&d, &u, sizeof d);
  return d;
}

// Whether ExpF computes x itself: |x| < 88 (and not NaN).
inline bool InRange(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return (u & 0x7fffffffu) < 0x42b00000u;
}

}  // namespace expf_data

inline float ExpF(float x) {
  using namespace expf_data;
  if (!InRange(x)) return std::exp(x);
  const double xd = x;
  double kd = std::fma(xd, AsDouble(kInvLn2N), AsDouble(kShift));
  uint64_t ki;
  std::memcpy(&ki, &kd, sizeof ki);
  kd -= AsDouble(kShift);
  const double r = std::fma(AsDouble(kInvLn2N), xd, -kd);
  const double s = AsDouble(kTable[ki % 32] + (ki << 47));
  const double z = std::fma(r, AsDouble(kC0), AsDouble(kC1));
  const double r2 = r * r;
  double y = std::fma(r, AsDouble(kC2), 1.0);
  y = std::fma(z, r2, y);
  return static_cast<float>(y * s);
}

}  // namespace st
