// st::AxpyRow with Highway dispatch: y += a * w without materializing the
// dequantized row. Per target:
//  F32, F16, BF16: widen the weights to float lanes (PromoteTo for 16-bit
//                  types), y = MulAdd(a, w, y); scalar tail.
//  Q8_0, Q4_0:     per block, levels widened int8/nibble -> int32 -> float
//                  (nibbles: low = element i, high = element i + 16, minus 8),
//                  y = MulAdd(a * d, level, y).
// AxpyRows (many rows into one y): on AVX-512, Q4_0/Q8_0 rows in chunks that
// stay in L1 while column tiles of up to 8 blocks, held in registers, pass
// over them (the next chunk prefetched); nibbles become floats via a
// 16-entry permute; same operations per element, so bit-identical.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/axpy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "kernels/axpy.h"
#include "kernels/fp16.h"
#include "kernels/quant.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {
namespace {

namespace hn = hwy::HWY_NAMESPACE;

// a * w + y with the same instruction the vector body uses (a fused
// multiply-add where the target has one), so an element's result does not
// depend on whether it falls in the body or the tail: callers that split a
// row into column ranges (across threads) get the same numbers for any split.
inline float MulAdd1(float a, float w, float y) {
  const hn::CappedTag<float, 1> d1;
  return hn::GetLane(hn::MulAdd(hn::Set(d1, a), hn::Set(d1, w), hn::Set(d1, y)));
}

void AxpyF32(const char* w_bytes, float a, float* y, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  const float* w = reinterpret_cast<const float*>(w_bytes);
  const auto va = hn::Set(df, a);
  size_t j = 0;
  for (; j + N <= n; j += N) {
    hn::StoreU(hn::MulAdd(va, hn::LoadU(df, w + j), hn::LoadU(df, y + j)), df, y + j);
  }
  for (; j < n; ++j) {
    float wj;
    std::memcpy(&wj, w_bytes + 4 * j, 4);
    y[j] = MulAdd1(a, wj, y[j]);
  }
}

template <typename T, float (*kConvert)(uint16_t)>
void Axpy16(const char* w_bytes, float a, float* y, size_t n) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<T, decltype(df)> dh;
  const size_t N = hn::Lanes(df);
  const T* w = reinterpret_cast<const T*>(w_bytes);
  const auto va = hn::Set(df, a);
  size_t j = 0;
  for (; j + N <= n; j += N) {
    const auto wv = hn::PromoteTo(df, hn::LoadU(dh, w + j));
    hn::StoreU(hn::MulAdd(va, wv, hn::LoadU(df, y + j)), df, y + j);
  }
  for (; j < n; ++j) {
    uint16_t h;
    std::memcpy(&h, w_bytes + 2 * j, 2);
    y[j] = MulAdd1(a, kConvert(h), y[j]);
  }
}

// Float lanes capped so that the lane count divides kQK / 2.
using DQ = hn::CappedTag<float, kQK / 2>;

float BlockScale(const char* block) {
  uint16_t h;
  std::memcpy(&h, block, 2);
  return F16ToF32(h);
}

void AxpyQ8_0(const char* w, float a, float* y, size_t n) {
  const DQ df;
  const hn::RebindToSigned<DQ> di;
  const hn::Rebind<int8_t, DQ> d8;
  const size_t N = hn::Lanes(df);
  for (size_t b = 0; b < n / kQK; ++b, w += sizeof(BlockQ8_0), y += kQK) {
    const int8_t* qs = reinterpret_cast<const int8_t*>(w + offsetof(BlockQ8_0, qs));
    const auto ad = hn::Set(df, a * BlockScale(w));
    for (size_t c = 0; c < kQK; c += N) {
      const auto q = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, qs + c)));
      hn::StoreU(hn::MulAdd(ad, q, hn::LoadU(df, y + c)), df, y + c);
    }
  }
}

void AxpyQ4_0(const char* w, float a, float* y, size_t n) {
  const DQ df;
  const hn::RebindToSigned<DQ> di;
  const hn::RebindToUnsigned<DQ> du;
  const hn::Rebind<uint8_t, DQ> du8;
  const size_t N = hn::Lanes(df);
  const auto mask = hn::Set(du, 0x0F);
  const auto eight = hn::Set(di, 8);
  for (size_t b = 0; b < n / kQK; ++b, w += sizeof(BlockQ4_0), y += kQK) {
    const uint8_t* qs = reinterpret_cast<const uint8_t*>(w + offsetof(BlockQ4_0, qs));
    const auto ad = hn::Set(df, a * BlockScale(w));
    for (size_t c = 0; c < kQK / 2; c += N) {
      const auto packed = hn::PromoteTo(du, hn::LoadU(du8, qs + c));
      const auto lo = hn::ConvertTo(df, hn::Sub(hn::BitCast(di, hn::And(packed, mask)), eight));
      const auto hi = hn::ConvertTo(df, hn::Sub(hn::BitCast(di, hn::ShiftRight<4>(packed)), eight));
      hn::StoreU(hn::MulAdd(ad, lo, hn::LoadU(df, y + c)), df, y + c);
      hn::StoreU(hn::MulAdd(ad, hi, hn::LoadU(df, y + kQK / 2 + c)), df, y + kQK / 2 + c);
    }
  }
}

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
// Fully unrolled so that acc[] lives in registers (GCC kept it on the stack:
// a load and a store around every FMA).
#if defined(__clang__)
#define ST_AXPY_UNROLL _Pragma("unroll")
#else
#define ST_AXPY_UNROLL _Pragma("GCC unroll 16")
#endif

// kBlocks consecutive blocks of y (32 floats each) kept in registers while
// every row adds its a * d * level, with the same MulAdd per element as
// AxpyQ4_0/AxpyQ8_0 (so results are bit-identical to them).
template <DType kType, size_t kBlocks>
void TileRows(const char* w, size_t row_bytes, const uint32_t* rows, const float* a,
              size_t n_rows, float* y, const uint32_t* ahead, size_t n_ahead) {
  constexpr bool kQ4 = kType == DType::kQ4_0;
  constexpr size_t kBlockBytes = kQ4 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
  // Level - 8 of every nibble value, as float: exact, like ConvertTo(q - 8).
  const __m512 table = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  const __m512i low4 = _mm512_set1_epi32(0x0F);
  __m512 acc[2 * kBlocks];
  ST_AXPY_UNROLL
  for (size_t i = 0; i < 2 * kBlocks; ++i) acc[i] = _mm512_loadu_ps(y + 16 * i);
#if HWY_TARGET == HWY_AVX3_DL
  constexpr bool kGather = kQ4;  // needs VBMI's byte permute
#else
  constexpr bool kGather = false;
#endif
  // Q4_0: the tile's kBlocks scales (bytes 18b and 18b + 1, all within its
  // first 128 bytes) gathered by one byte permute of two masked 64-byte loads
  // into 8 halves, converted and multiplied by a[k] in one go, and read back
  // per block as a broadcast load (no shuffle): fewer vector ops per block.
  // An 8-block tile's masks are all ones (plain loads); only the 1-4 block
  // tails of rows whose width is not a multiple of 256 use masked loads.
  alignas(32) float scale[8];
  __m512i gather_idx = _mm512_setzero_si512();
  if constexpr (kGather) {
    alignas(64) uint8_t idx[64] = {};
    for (size_t b = 0; b < kBlocks; ++b) {
      idx[2 * b] = static_cast<uint8_t>(b * kBlockBytes);
      idx[2 * b + 1] = static_cast<uint8_t>(b * kBlockBytes + 1);
    }
    gather_idx = _mm512_load_si512(idx);
  }
  constexpr size_t kScaleBytes = kGather ? (kBlocks - 1) * kBlockBytes + 2 : 0;
  constexpr __mmask64 kMask0 = kScaleBytes >= 64 ? ~__mmask64{0} : (__mmask64{1} << kScaleBytes) - 1;
  constexpr __mmask64 kMask1 = kScaleBytes <= 64    ? 0
                               : kScaleBytes >= 128 ? ~__mmask64{0}
                                                    : (__mmask64{1} << (kScaleBytes % 64)) - 1;
  for (size_t k = 0; k < n_rows; ++k) {
    const char* row = w + rows[k] * row_bytes;
    if (k < n_ahead) {
      const char* next = w + ahead[k] * row_bytes;
      ST_AXPY_UNROLL
      for (size_t off = 0; off < kBlocks * kBlockBytes; off += 64) {
        _mm_prefetch(next + off, _MM_HINT_T1);
      }
    }
    const float ak = a[k];
    if constexpr (kGather) {
      const __m512i b0 = _mm512_maskz_loadu_epi8(kMask0, row);
      const __m512i b1 = kMask1 != 0 ? _mm512_maskz_loadu_epi8(kMask1, row + 64) : _mm512_setzero_si512();
      const __m128i halves = _mm512_castsi512_si128(_mm512_permutex2var_epi8(b0, gather_idx, b1));
      _mm256_store_ps(scale, _mm256_mul_ps(_mm256_set1_ps(ak), _mm256_cvtph_ps(halves)));
      asm volatile("" ::: "memory");  // read the products back from memory
    }
    ST_AXPY_UNROLL
    for (size_t b = 0; b < kBlocks; ++b) {
      const char* blk = row + b * kBlockBytes;
      __m512 ad;
      if constexpr (kGather) {
        ad = _mm512_set1_ps(scale[b]);
      } else {
        // The block scale through F16C: F16ToF32's value for every finite
        // fp16 (and inf), in two instructions instead of a branchy decode.
        uint16_t d16;
        std::memcpy(&d16, blk, 2);
        ad = _mm512_set1_ps(ak * _cvtsh_ss(d16));
      }
      if constexpr (kQ4) {
        const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2)));
        const __m512 lo = _mm512_permutexvar_ps(_mm512_and_si512(q, low4), table);
        const __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table);
        acc[2 * b] = _mm512_fmadd_ps(ad, lo, acc[2 * b]);
        acc[2 * b + 1] = _mm512_fmadd_ps(ad, hi, acc[2 * b + 1]);
      } else {
        const __m128i* qs = reinterpret_cast<const __m128i*>(blk + 2);
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(qs)));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(qs + 1)));
        acc[2 * b] = _mm512_fmadd_ps(ad, lo, acc[2 * b]);
        acc[2 * b + 1] = _mm512_fmadd_ps(ad, hi, acc[2 * b + 1]);
      }
    }
  }
  ST_AXPY_UNROLL
  for (size_t i = 0; i < 2 * kBlocks; ++i) _mm512_storeu_ps(y + 16 * i, acc[i]);
}

// Rows in chunks, each chunk through every column tile before the next: a
// chunk's rows (~24 KiB of them, at most 16: Q4_0 at 1536 columns 16 x
// 864 B) stay in L1 across its tiles, so memory sees whole rows, and each
// tile's accumulators go back to y between chunks (exact: every element
// still gets the rows' products in row order). Each tile pass prefetches
// its columns of the next chunk's rows into L2 (scattered rows defeat the
// hardware prefetcher). kernels_sparse_rows_benchmark, 4b shapes, half the
// rows from DRAM, one thread (session 13, against the earlier all-rows-per-
// tile order with tiles 64 rows ahead): Q4_0 49-51 -> 33-37 us per matrix
// at 1536 columns per call, 49-54 -> 39-42 at 256; Q8_0 77-82 -> 40 and
// 77-86 -> 75; L2-hot unchanged (~27 us). A chunk ahead beat 8, 32 or 64
// rows; whole rows prefetched by the first tile, or into L1, were slower.
constexpr size_t kChunkBytes = 24 << 10;
constexpr size_t kMaxChunkRows = 16;

template <DType kType>
void QuantRows(const char* w, size_t row_bytes, const uint32_t* rows, const float* a,
               size_t n_rows, float* y, size_t n) {
  constexpr size_t kBlockBytes = kType == DType::kQ4_0 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
  const size_t nb = n / kQK;
  if (nb == 0) return;
  const size_t chunk = std::clamp<size_t>(kChunkBytes / (nb * kBlockBytes), 1, kMaxChunkRows);
  for (size_t k0 = 0; k0 < n_rows; k0 += chunk) {
    const size_t kn = std::min(chunk, n_rows - k0);
    const uint32_t* r = rows + k0;
    const float* ak = a + k0;
    const uint32_t* ahead = r + kn;  // the next chunk, as far as it goes
    const size_t n_ahead = std::min(kn, n_rows - k0 - kn);
    size_t b = 0;
    for (; b + 8 <= nb; b += 8) {
      TileRows<kType, 8>(w + b * kBlockBytes, row_bytes, r, ak, kn, y + b * kQK, ahead, n_ahead);
    }
    if (b + 4 <= nb) {
      TileRows<kType, 4>(w + b * kBlockBytes, row_bytes, r, ak, kn, y + b * kQK, ahead, n_ahead);
      b += 4;
    }
    const char* wt = w + b * kBlockBytes;
    float* yt = y + b * kQK;
    switch (nb - b) {
      case 3: TileRows<kType, 3>(wt, row_bytes, r, ak, kn, yt, ahead, n_ahead); break;
      case 2: TileRows<kType, 2>(wt, row_bytes, r, ak, kn, yt, ahead, n_ahead); break;
      case 1: TileRows<kType, 1>(wt, row_bytes, r, ak, kn, yt, ahead, n_ahead); break;
      default: break;
    }
  }
}
#endif

}  // namespace

void AxpyRowT(DType type, const void* w_row, float a, float* y, size_t n);

void AxpyRowsT(DType type, const void* w, size_t row_bytes, size_t offset, const uint32_t* rows,
               const float* a, size_t n_rows, float* y, size_t n) {
  const char* base = static_cast<const char*>(w) + offset;
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  if (type == DType::kQ4_0) return QuantRows<DType::kQ4_0>(base, row_bytes, rows, a, n_rows, y, n);
  if (type == DType::kQ8_0) return QuantRows<DType::kQ8_0>(base, row_bytes, rows, a, n_rows, y, n);
#endif
  for (size_t k = 0; k < n_rows; ++k) AxpyRowT(type, base + rows[k] * row_bytes, a[k], y, n);
}

void AxpyRowT(DType type, const void* w_row, float a, float* y, size_t n) {
  const char* w = static_cast<const char*>(w_row);
  switch (type) {
    case DType::kF32: return AxpyF32(w, a, y, n);
    case DType::kF16: return Axpy16<hwy::float16_t, F16ToF32>(w, a, y, n);
    case DType::kBF16: return Axpy16<hwy::bfloat16_t, BF16ToF32>(w, a, y, n);
    case DType::kQ8_0: return AxpyQ8_0(w, a, y, n);
    case DType::kQ4_0: return AxpyQ4_0(w, a, y, n);
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(AxpyRowT);
HWY_EXPORT(AxpyRowsT);

void AxpyRows(DType type, const void* w, size_t row_bytes, size_t offset, const uint32_t* rows,
              const float* a, size_t n_rows, float* y, size_t n) {
  HWY_DYNAMIC_DISPATCH(AxpyRowsT)(type, w, row_bytes, offset, rows, a, n_rows, y, n);
}

void AxpyRow(DType type, const void* w_row, float a, float* y, size_t n) {
  HWY_DYNAMIC_DISPATCH(AxpyRowT)(type, w_row, a, y, n);
}

}  // namespace st
#endif  // HWY_ONCE
