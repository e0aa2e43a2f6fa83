// st::AxpyRow with Highway dispatch: y += a * w without materializing the
// dequantized row. Per target:
//  F32, F16, BF16: widen the weights to float lanes (PromoteTo for 16-bit
//                  types), y = MulAdd(a, w, y); scalar tail.
//  Q8_0, Q4_0:     per block, levels widened int8/nibble -> int32 -> float
//                  (nibbles: low = element i, high = element i + 16, minus 8),
//                  y = MulAdd(a * d, level, y).
// AxpyRows (many rows into one y): on AVX-512, Q4_0/Q8_0 rows in chunks that
// stay in L1 while column tiles of up to 8 blocks, held in registers, pass
// over them (the next chunk prefetched). FloatRows: the same operations per
// element as AxpyRow, so bit-identical (Q8_0; Q4_0 on AVX-512 without
// VNNI/VBMI). GroupedRowsQ4_0 (AVX3_DL): int8 products of 4 rows at a time
// with quantized coefficients, as scalar::AxpyRowsGroupedQ4_0. Other
// targets: AxpyRow per row, a few rows ahead prefetched into L2.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/axpy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <limits>

#include "kernels/avx512_vnni.h"
#include "kernels/axpy.h"
#include "kernels/fp16.h"
#include "kernels/quant.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {
namespace {

namespace hn = hwy::HWY_NAMESPACE;

#include "kernels/widen16-inl.h"

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
  const size_t N = hn::Lanes(df);
  const T* w = reinterpret_cast<const T*>(w_bytes);
  const auto va = hn::Set(df, a);
  size_t j = 0;
  for (; j + N <= n; j += N) {
    const auto wv = Widen16(df, w + j);
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
// AxpyQ4_0/AxpyQ8_0 (so results are bit-identical to them). Q4_0 nibbles
// become floats through a 16-entry permute.
template <DType kType, size_t kBlocks>
void TileRows(const char* w, size_t row_bytes, const uint32_t* rows, const float* a, size_t n_rows,
              float* y, const uint32_t* ahead, size_t n_ahead) {
  constexpr bool kQ4 = kType == DType::kQ4_0;
  constexpr size_t kBlockBytes = kQ4 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0);
  // Level - 8 of every nibble value, as float: exact, like ConvertTo(q - 8).
  const __m512 table = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  const __m512i low4 = _mm512_set1_epi32(0x0F);
  __m512 acc[2 * kBlocks];
  ST_AXPY_UNROLL
  for (size_t i = 0; i < 2 * kBlocks; ++i) acc[i] = _mm512_loadu_ps(y + 16 * i);
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
    ST_AXPY_UNROLL
    for (size_t b = 0; b < kBlocks; ++b) {
      const char* blk = row + b * kBlockBytes;
      // The block scale through F16C: F16ToF32's value for every finite
      // fp16 (and inf), in two instructions instead of a branchy decode.
      uint16_t d16;
      std::memcpy(&d16, blk, 2);
      const __m512 ad = _mm512_set1_ps(ak * _cvtsh_ss(d16));
      if constexpr (kQ4) {
        const __m512i q =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2)));
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
void FloatRows(const char* w, size_t row_bytes, const uint32_t* rows, const float* a, size_t n_rows,
               float* y, size_t n) {
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

#if HWY_TARGET == HWY_AVX3_DL
// Q4_0 rows in groups of 4 with int8 coefficients (AxpyRows in axpy.h):
// AVX-512 with VNNI (dpbusd) and VBMI (the byte permutes that interleave 4
// rows).
ST_AVX512VNNI_BEGIN

constexpr bool kGrouped = true;

// Blocks whose coefficients one pass computes (a window of columns).
constexpr size_t kWindowBlocks = 128;

// A group's coefficients over a window of blocks, per block: the 4 int8
// levels in one dword, the offset correction -8 * their sum and the scale.
struct alignas(64) GroupCoefs {
  int32_t q[kWindowBlocks];
  int32_t corr[kWindowBlocks];
  float scale[kWindowBlocks];
};

// fp16 scales of `count` (<= 16) consecutive Q4_0 blocks from `row`, as
// floats (lanes past count 0). Whole runs of 16 take two byte permutes of
// two 64-byte loads each (8 blocks' scales lie in their first 128 bytes,
// which end inside the 8th block), so nothing past the row is read; a
// shorter tail is copied block by block.
inline __m512 GatherScales(const char* row, size_t count) {
  alignas(64) static constexpr auto kIdx = [] {
    std::array<uint8_t, 64> idx{};
    for (size_t j = 0; j < 8; ++j) {
      idx[2 * j] = static_cast<uint8_t>(j * sizeof(BlockQ4_0));
      idx[2 * j + 1] = static_cast<uint8_t>(j * sizeof(BlockQ4_0) + 1);
    }
    return idx;
  }();
  if (count == 16) {
    const auto window = [&](const char* p) {  // 8 scales in the low 16 bytes
      return _mm512_castsi512_si128(_mm512_permutex2var_epi8(
          _mm512_loadu_si512(p), _mm512_load_si512(kIdx.data()), _mm512_loadu_si512(p + 64)));
    };
    const __m128i lo = window(row), hi = window(row + 8 * sizeof(BlockQ4_0));
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
  }
  alignas(64) uint16_t h[16] = {};
  for (size_t b = 0; b < count; ++b) std::memcpy(&h[b], row + b * sizeof(BlockQ4_0), 2);
  return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(h)));
}

// Coefficients of the group rows r[0..3] (a[k] = 0 for padding) over nb
// blocks, exactly as scalar::AxpyRowsGroupedQ4_0 computes them: c = a * d,
// m = max |c|, q = round-to-nearest-even(c * (127 / m)), scale = m * (1 /
// 127). A block whose m is below kGroupedMinMax (where 127 / m would
// overflow) gets q = 0; one with a NaN or infinite c gets q = 0 and a NaN
// scale, so its elements turn NaN as the float path's would.
void Coefficients(const char* const* r, const float* a, size_t nb, GroupCoefs* out) {
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  for (size_t b = 0; b < nb; b += 16) {
    const size_t count = std::min<size_t>(16, nb - b);
    __m512 c[4];
    __m512 m = _mm512_setzero_ps();
    __mmask16 bad = 0;
    ST_AXPY_UNROLL
    for (size_t k = 0; k < 4; ++k) {
      c[k] = _mm512_mul_ps(_mm512_set1_ps(a[k]), GatherScales(r[k] + b * sizeof(BlockQ4_0), count));
      bad |= _mm512_fpclass_ps_mask(c[k], 0x99);  // QNaN, SNaN, +inf, -inf
      m = _mm512_max_ps(m, _mm512_and_ps(c[k], abs_mask));
    }
    const __mmask16 usable =
        _mm512_cmp_ps_mask(m, _mm512_set1_ps(kGroupedMinMax), _CMP_GE_OQ) &
        static_cast<__mmask16>(~bad);
    const __m512 inv = _mm512_maskz_div_ps(usable, _mm512_set1_ps(127.0f), m);
    __m512i packed = _mm512_setzero_si512(), sum = _mm512_setzero_si512();
    ST_AXPY_UNROLL
    for (size_t k = 0; k < 4; ++k) {
      const __m512i q = _mm512_maskz_cvtps_epi32(usable, _mm512_mul_ps(c[k], inv));
      sum = _mm512_add_epi32(sum, q);
      const __m512i byte = _mm512_and_si512(q, _mm512_set1_epi32(0xFF));
      packed = _mm512_or_si512(packed, _mm512_slli_epi32(byte, static_cast<unsigned>(8 * k)));
    }
    _mm512_store_si512(out->q + b, packed);
    const __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 3));
    _mm512_store_si512(out->corr + b, corr);
    const __m512 scale = _mm512_mul_ps(m, _mm512_set1_ps(1.0f / 127.0f));
    const __m512 nan = _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN());
    _mm512_store_ps(out->scale + b, _mm512_mask_mov_ps(scale, bad, nan));
  }
}

// kBlocks consecutive blocks of y (32 floats each) kept in registers while
// every group of the chunk adds, per block, scale * (int32 sums over its 4
// rows of level * coefficient) -- one dpbusd per 16 columns of 4 rows -- in
// group order, as scalar::AxpyRowsGroupedQ4_0 does.
template <size_t kBlocks>
void TileGroups(const char* const* rows, size_t n_groups, const GroupCoefs* coefs, size_t b0,
                float* y, const char* const* ahead, size_t n_ahead) {
  // Byte 4j + k of the permuted register is byte j of row k's levels (row k
  // loaded into 128-bit lane k).
  alignas(64) static constexpr uint8_t kInterleave[64] = {
      0,  16, 32, 48, 1,  17, 33, 49, 2,  18, 34, 50, 3,  19, 35, 51, 4,  20, 36, 52, 5,  21,
      37, 53, 6,  22, 38, 54, 7,  23, 39, 55, 8,  24, 40, 56, 9,  25, 41, 57, 10, 26, 42, 58,
      11, 27, 43, 59, 12, 28, 44, 60, 13, 29, 45, 61, 14, 30, 46, 62, 15, 31, 47, 63};
  // This tile's lines of a next-chunk group, prefetched a few per block: a
  // burst of all of them at once overflows the miss queue.
  constexpr size_t kLines = (kBlocks * sizeof(BlockQ4_0) + 63) / 64;
  const size_t col = b0 * sizeof(BlockQ4_0);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const auto load = [](const char* p) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  };
  __m512 acc[2 * kBlocks];
  ST_AXPY_UNROLL
  for (size_t i = 0; i < 2 * kBlocks; ++i) acc[i] = _mm512_loadu_ps(y + 16 * i);
  for (size_t g = 0; g < n_groups; ++g) {
    const char* const* r = rows + 4 * g;
    const GroupCoefs& cg = coefs[g];
    ST_AXPY_UNROLL
    for (size_t b = 0; b < kBlocks; ++b) {
      if (g < n_ahead) {
        ST_AXPY_UNROLL
        for (size_t i = 4 * kLines * b / kBlocks; i < 4 * kLines * (b + 1) / kBlocks; ++i) {
          _mm_prefetch(ahead[4 * g + i % 4] + col + 64 * (i / 4), _MM_HINT_T1);
        }
      }
      const size_t at = col + b * sizeof(BlockQ4_0) + 2;  // the block's levels
      __m512i v = _mm512_castsi128_si512(load(r[0] + at));
      v = _mm512_inserti32x4(v, load(r[1] + at), 1);
      v = _mm512_inserti32x4(v, load(r[2] + at), 2);
      v = _mm512_permutexvar_epi8(_mm512_load_si512(kInterleave),
                                  _mm512_inserti32x4(v, load(r[3] + at), 3));
      // Low nibbles are elements 0-15, high ones 16-31: u8 levels times the
      // s8 coefficients, plus -8 * their sum.
      const __m512i q = _mm512_set1_epi32(cg.q[b0 + b]);
      const __m512i corr = _mm512_set1_epi32(cg.corr[b0 + b]);
      const __m512i lo = _mm512_dpbusd_epi32(corr, _mm512_and_si512(v, low4), q);
      const __m512i high = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
      const __m512i hi = _mm512_dpbusd_epi32(corr, high, q);
      const __m512 scale = _mm512_set1_ps(cg.scale[b0 + b]);
      acc[2 * b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), scale, acc[2 * b]);
      acc[2 * b + 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), scale, acc[2 * b + 1]);
    }
  }
  ST_AXPY_UNROLL
  for (size_t i = 0; i < 2 * kBlocks; ++i) _mm512_storeu_ps(y + 16 * i, acc[i]);
}

// Rows in groups of 4 (the last padded with coefficient 0), groups in chunks
// whose rows (~24 KiB, at most 16) stay in L1 while every column tile passes
// over them, so memory sees whole rows, as FloatRows does; each tile pass
// prefetches its columns of the next chunk into L2. Coefficients are
// computed per chunk for a window of up to kWindowBlocks blocks: the whole
// row at 4b and 21b widths (48 and 80 blocks); wider rows are read in one
// pass per window, the next window's first chunk not prefetched.
// kernels_sparse_rows_benchmark, 4b shape, half the rows, one thread
// (session 14, against FloatRows): L2-hot 27 -> 17 us, from DRAM 33 -> 24.
// (Q8_0 the same way: hot 25 -> 20 us, but from DRAM no faster, 40-44
// against 38-40 us, so Q8_0 keeps FloatRows and its exact products.
// Computing each tile's coefficients as it goes, from the lines it reads
// anyway, was slower: 21 us hot, 28 from DRAM.)
constexpr size_t kGroupsPerChunk = 4;

void GroupedRowsQ4_0(const char* w, size_t row_bytes, const uint32_t* rows, const float* a,
                     size_t n_rows, float* y, size_t n) {
  const size_t nb_all = n / kQK;
  if (nb_all == 0 || n_rows == 0) return;
  const size_t n_groups = (n_rows + 3) / 4;
  const size_t chunk = std::clamp<size_t>(
      kChunkBytes / (4 * std::min(nb_all, kWindowBlocks) * sizeof(BlockQ4_0)), 1, kGroupsPerChunk);
  const char* ptr[2 * 4 * kGroupsPerChunk];  // this chunk's rows, then the next's
  float pad_a[4 * kGroupsPerChunk];
  GroupCoefs coefs[kGroupsPerChunk];
  for (size_t w0 = 0; w0 < nb_all; w0 += kWindowBlocks) {
    const size_t nb = std::min(kWindowBlocks, nb_all - w0);
    const char* base = w + w0 * sizeof(BlockQ4_0);
    float* yw = y + w0 * kQK;
    // Row pointers of groups [g0, g0 + count), padded with the last row.
    auto fill = [&](size_t g0, size_t count, const char** out) {
      for (size_t i = 0; i < 4 * count; ++i) {
        out[i] = base + rows[std::min(4 * g0 + i, n_rows - 1)] * row_bytes;
      }
    };
    for (size_t g0 = 0; g0 < n_groups; g0 += chunk) {
      const size_t gn = std::min(chunk, n_groups - g0);
      const size_t next = std::min(chunk, n_groups - g0 - gn);
      fill(g0, gn, ptr);
      fill(g0 + gn, next, ptr + 4 * kGroupsPerChunk);
      for (size_t i = 0; i < 4 * gn; ++i) pad_a[i] = 4 * g0 + i < n_rows ? a[4 * g0 + i] : 0.0f;
      for (size_t g = 0; g < gn; ++g) Coefficients(ptr + 4 * g, pad_a + 4 * g, nb, &coefs[g]);
      const char* const* ahead = ptr + 4 * kGroupsPerChunk;
      size_t b = 0;
      for (; b + 8 <= nb; b += 8) TileGroups<8>(ptr, gn, coefs, b, yw + b * kQK, ahead, next);
      if (b + 4 <= nb) {
        TileGroups<4>(ptr, gn, coefs, b, yw + b * kQK, ahead, next);
        b += 4;
      }
      switch (nb - b) {
        case 3: TileGroups<3>(ptr, gn, coefs, b, yw + b * kQK, ahead, next); break;
        case 2: TileGroups<2>(ptr, gn, coefs, b, yw + b * kQK, ahead, next); break;
        case 1: TileGroups<1>(ptr, gn, coefs, b, yw + b * kQK, ahead, next); break;
        default: break;
      }
    }
  }
}

ST_AVX512VNNI_END
#else
constexpr bool kGrouped = false;
#endif

}  // namespace

void AxpyRowT(DType type, const void* w_row, float a, float* y, size_t n);

bool AxpyRowsGroupedT(DType type) { return kGrouped && type == DType::kQ4_0; }

void AxpyRowsT(DType type, const void* w, size_t row_bytes, size_t offset, const uint32_t* rows,
               const float* a, size_t n_rows, float* y, size_t n) {
  const char* base = static_cast<const char*>(w) + offset;
#if HWY_TARGET == HWY_AVX3_DL
  if (type == DType::kQ4_0) return GroupedRowsQ4_0(base, row_bytes, rows, a, n_rows, y, n);
#endif
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  if (type == DType::kQ4_0) return FloatRows<DType::kQ4_0>(base, row_bytes, rows, a, n_rows, y, n);
  if (type == DType::kQ8_0) return FloatRows<DType::kQ8_0>(base, row_bytes, rows, a, n_rows, y, n);
#endif
  // Other targets: row by row, the row kRowsAhead on prefetched into L2 as
  // each row is added (scattered rows defeat the hardware prefetcher).
  // ST_BENCH_AVX2=1 kernels_sparse_rows_benchmark, half the rows from DRAM,
  // one thread, 3 runs alternated (session 23): Q4_0 at 1536 columns
  // 2.76-2.89 -> 3.82-4.14 GB/s, at 256 1.80-1.98 -> 3.11-3.71; Q8_0
  // 4.05-4.16 -> 5.19-5.27 and 2.00-2.25 -> 5.02-5.76 (L2-hot: 3.9-6.5).
  constexpr size_t kRowsAhead = 4;
  const size_t bytes = RowBytes(type, n);
  for (size_t k = 0; k < n_rows; ++k) {
    if (k + kRowsAhead < n_rows) {
      const uintptr_t next =
          reinterpret_cast<uintptr_t>(base) + rows[k + kRowsAhead] * row_bytes;
      for (size_t off = 0; off < bytes; off += 64) {
        __builtin_prefetch(reinterpret_cast<const void*>(next + off), 0, 2);  // into L2
      }
    }
    AxpyRowT(type, base + rows[k] * row_bytes, a[k], y, n);
  }
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
HWY_EXPORT(AxpyRowsGroupedT);

bool AxpyRowsGrouped(DType type) { return HWY_DYNAMIC_DISPATCH(AxpyRowsGroupedT)(type); }

void AxpyRows(DType type, const void* w, size_t row_bytes, size_t offset, const uint32_t* rows,
              const float* a, size_t n_rows, float* y, size_t n) {
  HWY_DYNAMIC_DISPATCH(AxpyRowsT)(type, w, row_bytes, offset, rows, a, n_rows, y, n);
}

void AxpyRow(DType type, const void* w_row, float a, float* y, size_t n) {
  HWY_DYNAMIC_DISPATCH(AxpyRowT)(type, w_row, a, y, n);
}

}  // namespace st
#endif  // HWY_ONCE
