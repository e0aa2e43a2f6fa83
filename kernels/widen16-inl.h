// F16 and BF16 lanes widened to f32, one set per Highway target. Included by
// the kernels' *_simd.cc / axpy.cc inside namespace st::HWY_NAMESPACE::
// (anonymous) once per target, after `namespace hn = hwy::HWY_NAMESPACE`;
// not a public header.
//
// Highway 1.0.3 widens F16 in software on targets without F16C (SSSE3,
// SSE4, EMU128; ARMv7 and WASM alike) and there takes exponent 31 for a number: +inf came out as
// 65536 and NaN as 98304, where F16ToF32 (the scalar twins and the kernels'
// tails) gives inf and NaN. Those targets widen lane by lane with F16ToF32.
// BF16 widens by a shift on every target, exactly.

// NOLINT(build/header_guard): per-target re-inclusion (Highway -inl.h idiom).
#if defined(ST_KERNELS_WIDEN16_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ST_KERNELS_WIDEN16_INL_H_
#undef ST_KERNELS_WIDEN16_INL_H_
#else
#define ST_KERNELS_WIDEN16_INL_H_
#endif

// Lanes(df) values at p (T: hwy::float16_t or hwy::bfloat16_t) as f32.
template <typename T, class DF>
HWY_INLINE hn::Vec<DF> Widen16(DF df, const T* p) {
  // Hardware conversion only where it is known to be there: F16C (x86
  // AVX2 and up, as f16_row_simd.cc) or AArch64; everything else (SSSE3,
  // SSE4, EMU128, ARMv7, WASM, HWY_DISABLE_F16C) lane by lane.
#if !((HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2 && !defined(HWY_DISABLE_F16C)) || HWY_ARCH_ARM_A64)
  if constexpr (std::is_same_v<T, hwy::float16_t>) {
    HWY_ALIGN float lanes[hn::MaxLanes(df)];
    for (size_t i = 0; i < hn::Lanes(df); ++i) {
      uint16_t h;
      std::memcpy(&h, p + i, sizeof(h));
      lanes[i] = F16ToF32(h);
    }
    return hn::Load(df, lanes);
  }
#endif
  const hn::Rebind<T, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, p));
}

#endif  // ST_KERNELS_WIDEN16_INL_H_ toggle
