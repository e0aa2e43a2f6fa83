// The AVX2 16-row packed Q4_K / Q6_K kernels (layouts and numerics in
// packed_kquant.h). Included by packed_kquant_simd.cc inside
// namespace st::HWY_NAMESPACE::(anonymous) for the AVX2 target only; not a
// public header. Defines GroupQ4_K<kVecs> and GroupQ6_K<kVecs> as the
// AVX-512 kernels there do, and what they use (LoadDword, XRef,
// kQ4_KSuperBytes, kQ6_KSuperBytes, PrefetchSpan) comes from that file.
//
// A 256-bit register holds 8 rows' dwords, so each 64-byte chunk is two
// halves: rows 0-7 and rows 8-15, each with its own float accumulators,
// sharing the activation dwords. There is no dpbusd: maddubs multiplies
// the u8 levels by the s8 activation levels and adds pairs into int16,
// and those are summed in int16 over a 32-weight sub-block (Q4_K: eight
// chunks of at most 2 * 15 * 128 = 3840 each, |sum| <= 30720) or over two
// chunks (Q6_K: at most 2 * 63 * 128 = 16128 each, |sum| <= 32256) before
// one madd against ones widens them to int32: the sums stay exact, so the
// results equal the scalar twin bit for bit.

#if defined(__clang__)
#define ST_PACKED_KQ2_UNROLL _Pragma("unroll")
#else
#define ST_PACKED_KQ2_UNROLL _Pragma("GCC unroll 8")
#endif

constexpr bool kAvailable = true;

HWY_INLINE __m256i Load256(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// 8 f16 at p as floats.
HWY_INLINE __m256 LoadHalves8(const uint8_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

template <size_t kVecs>
void GroupQ4_K(const uint8_t* group, size_t nsb, const XRef* xs, float* y, size_t y_stride) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  const __m256i k1 = _mm256_set1_epi32(0x3f3f3f3f), k2 = _mm256_set1_epi32(0x0f0f0f0f),
                k3 = _mm256_set1_epi32(0x03030303), byte = _mm256_set1_epi32(0xFF);
  __m256 acc[2][kVecs];  // [rows 0-7 / 8-15][vector]
  ST_PACKED_KQ2_UNROLL
  for (size_t v = 0; v < kVecs; ++v) acc[0][v] = acc[1][v] = _mm256_setzero_ps();
  for (size_t i = 0; i < nsb; ++i) {
    const uint8_t* sb = group + i * kQ4_KSuperBytes;
    __m256 d[2], dmin[2];
    __m256i sc[2][2], mn[2][2];  // [half of the rows][scales/mins 0-3, 4-7]
    ST_PACKED_KQ2_UNROLL
    for (size_t hh = 0; hh < 2; ++hh) {
      d[hh] = LoadHalves8(sb + 16 * hh);
      dmin[hh] = LoadHalves8(sb + 32 + 16 * hh);
      // get_scale_min_k4 for 8 rows, as the AVX-512 kernel does for 16.
      const __m256i u0 = Load256(sb + kPackedQ4_KScales + 32 * hh);
      const __m256i u1 = Load256(sb + kPackedQ4_KScales + 64 + 32 * hh);
      const __m256i u2 = Load256(sb + kPackedQ4_KScales + 128 + 32 * hh);
      sc[hh][0] = _mm256_and_si256(u0, k1);
      sc[hh][1] =
          _mm256_or_si256(_mm256_and_si256(u2, k2),
                          _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u0, 6), k3), 4));
      mn[hh][0] = _mm256_and_si256(u1, k1);
      mn[hh][1] =
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), k2),
                          _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u1, 6), k3), 4));
    }
    ST_PACKED_KQ2_UNROLL
    for (size_t c = 0; c < 4; ++c) {
      const uint8_t* chunks = sb + kPackedQ4_KLevels + 512 * c;
      PrefetchSpan<kQ4_KSuperBytes / 4>(sb + kQ4_KSuperBytes / 4 * c);
      ST_PACKED_KQ2_UNROLL
      for (size_t half = 0; half < 2; ++half) {
        const size_t j = 2 * c + half;  // sub-block
        const size_t b = 8 * i + j;
        const int shift = static_cast<int>(8 * (j % 4));
        ST_PACKED_KQ2_UNROLL
        for (size_t hh = 0; hh < 2; ++hh) {
          const __m256 scale = _mm256_mul_ps(
              d[hh],
              _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(sc[hh][j / 4], shift), byte)));
          const __m256 minv = _mm256_mul_ps(
              dmin[hh],
              _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(mn[hh][j / 4], shift), byte)));
          __m256i w[8];
          ST_PACKED_KQ2_UNROLL
          for (size_t t = 0; t < 8; ++t) {
            const __m256i raw = Load256(chunks + 64 * t + 32 * hh);
            w[t] = half == 0 ? _mm256_and_si256(raw, low4)
                             : _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
          }
          ST_PACKED_KQ2_UNROLL
          for (size_t v = 0; v < kVecs; ++v) {
            // Two int16 chains of four chunks each, then one sum.
            __m256i s16[2];
            ST_PACKED_KQ2_UNROLL
            for (size_t t = 0; t < 8; ++t) {
              const __m256i xv = _mm256_set1_epi32(LoadDword(xs[v].q8[b].qs + 4 * t));
              const __m256i p = _mm256_maddubs_epi16(w[t], xv);
              s16[t % 2] = t < 2 ? p : _mm256_add_epi16(s16[t % 2], p);
            }
            const __m256i sum = _mm256_madd_epi16(_mm256_add_epi16(s16[0], s16[1]), ones);
            const float dx = xs[v].scale[b];
            acc[hh][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum),
                                         _mm256_mul_ps(scale, _mm256_set1_ps(dx)), acc[hh][v]);
            const float xsum = dx * static_cast<float>(xs[v].sum[b]);
            acc[hh][v] = _mm256_fmadd_ps(minv, _mm256_set1_ps(-xsum), acc[hh][v]);
          }
        }
      }
    }
  }
  ST_PACKED_KQ2_UNROLL
  for (size_t v = 0; v < kVecs; ++v) {
    _mm256_storeu_ps(y + v * y_stride, acc[0][v]);
    _mm256_storeu_ps(y + v * y_stride + 8, acc[1][v]);
  }
}

template <size_t kVecs>
void GroupQ6_K(const uint8_t* group, size_t nsb, const XRef* xs, float* y, size_t y_stride) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30),
                ones = _mm256_set1_epi16(1);
  __m256 acc[2][kVecs];
  ST_PACKED_KQ2_UNROLL
  for (size_t v = 0; v < kVecs; ++v) acc[0][v] = acc[1][v] = _mm256_setzero_ps();
  for (size_t i = 0; i < nsb; ++i) {
    const uint8_t* sb = group + i * kQ6_KSuperBytes;
    ST_PACKED_KQ2_UNROLL
    for (size_t s = 0; s < 8; ++s) {  // sub-block: half h, quarter g
      const size_t h = s / 4, g = s % 4, b = 8 * i + s;
      const uint8_t* ql = sb + kPackedQ6_KLow + 64 * (16 * h + 8 * (g % 2));
      const uint8_t* qh = sb + kPackedQ6_KHigh + 64 * 8 * h;
      PrefetchSpan<kQ6_KSuperBytes / 8>(sb + kQ6_KSuperBytes / 8 * s);
      ST_PACKED_KQ2_UNROLL
      for (size_t hh = 0; hh < 2; ++hh) {
        __m256i w[8];
        ST_PACKED_KQ2_UNROLL
        for (size_t t = 0; t < 8; ++t) {
          __m256i lo = Load256(ql + 64 * t + 32 * hh);
          if (g >= 2) lo = _mm256_srli_epi16(lo, 4);
          __m256i hi = Load256(qh + 64 * t + 32 * hh);
          // Bits 2g, 2g + 1 of each byte to bits 4, 5.
          if (g == 0) hi = _mm256_slli_epi16(hi, 4);
          if (g == 1) hi = _mm256_slli_epi16(hi, 2);
          if (g == 3) hi = _mm256_srli_epi16(hi, 2);
          w[t] = _mm256_or_si256(_mm256_and_si256(lo, low4), _mm256_and_si256(hi, bits45));
        }
        const __m256 d = LoadHalves8(sb + 16 * hh);
        __m256 scale[2];
        ST_PACKED_KQ2_UNROLL
        for (size_t k = 0; k < 2; ++k) {
          const __m128i sc8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(
              sb + kPackedQ6_KScales + 16 * (8 * h + 2 * g + k) + 8 * hh));
          scale[k] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc8)));
        }
        ST_PACKED_KQ2_UNROLL
        for (size_t v = 0; v < kVecs; ++v) {
          const __m256 dx = _mm256_set1_ps(xs[v].scale[b]);
          ST_PACKED_KQ2_UNROLL
          for (size_t k = 0; k < 2; ++k) {  // 16-weight half: chunks 4k .. 4k + 3
            __m256i sum = _mm256_set1_epi32(-32 * xs[v].half_sum[2 * b + k]);
            ST_PACKED_KQ2_UNROLL
            for (size_t t = 4 * k; t < 4 * k + 4; t += 2) {
              const __m256i p0 =
                  _mm256_maddubs_epi16(w[t], _mm256_set1_epi32(LoadDword(xs[v].q8[b].qs + 4 * t)));
              const __m256i p1 = _mm256_maddubs_epi16(
                  w[t + 1], _mm256_set1_epi32(LoadDword(xs[v].q8[b].qs + 4 * t + 4)));
              sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones));
            }
            acc[hh][v] =
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(scale[k], dx), acc[hh][v]);
          }
        }
      }
    }
  }
  ST_PACKED_KQ2_UNROLL
  for (size_t v = 0; v < kVecs; ++v) {
    _mm256_storeu_ps(y + v * y_stride, acc[0][v]);
    _mm256_storeu_ps(y + v * y_stride + 8, acc[1][v]);
  }
}

#undef ST_PACKED_KQ2_UNROLL
