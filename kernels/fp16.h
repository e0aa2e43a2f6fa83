// Scalar conversions between float and IEEE half / bfloat16 bit patterns.
#pragma once

#include <cstdint>
#include <cstring>

namespace st {

inline float Bits2F32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t F32Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// IEEE 754 binary16 -> float, exact for all inputs (subnormals, inf, NaN).
inline float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t man = h & 0x3FFu;
  if (exp == 0) {
    // Zero or subnormal: man * 2^-24.
    const float v = static_cast<float>(man) * 5.9604644775390625e-8f;
    return (sign ? -v : v);
  }
  if (exp == 31) return Bits2F32(sign | 0x7F800000u | (man << 13));
  return Bits2F32(sign | ((exp + 112) << 23) | (man << 13));
}

// float -> binary16 with round-to-nearest-even; overflow gives inf.
inline uint16_t F32ToF16(float f) {
  const uint32_t x = F32Bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);  // NaN
  if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520: inf
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: round abs * 2^24 to an integer (RNE).
    const float scaled = Bits2F32(abs) * 16777216.0f;  // exact
    uint32_t m = static_cast<uint32_t>(scaled);
    const float rem = scaled - static_cast<float>(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return static_cast<uint16_t>(sign | m);
  }
  // Normal: rebias exponent, round mantissa from 23 to 10 bits (RNE).
  uint32_t h = ((abs >> 13) - (112u << 10));
  const uint32_t rest = abs & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

inline float BF16ToF32(uint16_t b) { return Bits2F32(static_cast<uint32_t>(b) << 16); }

// float -> bfloat16 with round-to-nearest-even; NaN stays NaN.
inline uint16_t F32ToBF16(float f) {
  uint32_t x = F32Bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  x += 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

}  // namespace st
