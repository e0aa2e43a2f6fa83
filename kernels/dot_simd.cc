// st::DotRow / st::DotRows / st::DotRowsMulti: Highway SIMD dot products with
// run-time dispatch to the best target (AVX3_DL/AVX3/AVX2/SSE4/SSSE3/scalar on
// x86). Each kernel keeps float accumulator vectors and reduces them once at
// the end.
//
//  F32           : 4 independent MulAdd accumulators over LoadU'd floats.
//  F16, BF16     : PromoteTo(f32) of the 16-bit weights (F16C on AVX2+),
//                  then MulAdd, 2 accumulators.
//  Q4_0/Q8_0 x Q8_0 (dot_q8-inl.h): exact int32 sums per block (AVX3_DL:
//                  VNNI dpbusd, two blocks per 512-bit register; AVX3:
//                  maddubs + madd, same layout; AVX2: ggml's maddubs trick;
//                  other targets: int16 ReorderWidenMulAccumulate), converted
//                  to float and MulAdd'ed with d_w * d_x, as ggml. Up to 4
//                  activation vectors share each unpacked weight block.
//  Q4_0/Q8_0 x f32 (no q8): weights widened to int32 -> float, dotted with x
//                  per block in float, the block sum scaled by d_w.
// Tails (n % lanes) are handled with scalar loops; no load reads past a row.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/dot_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include "kernels/avx512_vnni.h"
#include "kernels/dot.h"
#include "kernels/fp16.h"

HWY_BEFORE_NAMESPACE();
namespace st {
namespace HWY_NAMESPACE {
namespace {

namespace hn = hwy::HWY_NAMESPACE;

#include "kernels/widen16-inl.h"

float LoadScale(const char* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return F16ToF32(h);
}

float DotF32(const char* w_bytes, const float* x, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  // Weight rows may be unaligned (mmap'ed tensors): byte pointer + LoadU.
  const float* w = reinterpret_cast<const float*>(w_bytes);
  auto a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
  size_t j = 0;
  for (; j + 4 * N <= n; j += 4 * N) {
    a0 = hn::MulAdd(hn::LoadU(df, w + j), hn::LoadU(df, x + j), a0);
    a1 = hn::MulAdd(hn::LoadU(df, w + j + N), hn::LoadU(df, x + j + N), a1);
    a2 = hn::MulAdd(hn::LoadU(df, w + j + 2 * N), hn::LoadU(df, x + j + 2 * N), a2);
    a3 = hn::MulAdd(hn::LoadU(df, w + j + 3 * N), hn::LoadU(df, x + j + 3 * N), a3);
  }
  for (; j + N <= n; j += N) a0 = hn::MulAdd(hn::LoadU(df, w + j), hn::LoadU(df, x + j), a0);
  float tail = 0.0f;
  for (; j < n; ++j) {
    float wj;
    std::memcpy(&wj, w_bytes + 4 * j, 4);
    tail += wj * x[j];
  }
  const auto sum = hn::Add(hn::Add(a0, a1), hn::Add(a2, a3));
  return hn::GetLane(hn::SumOfLanes(df, sum)) + tail;
}

// F16 or BF16 weights: T is hwy::float16_t or hwy::bfloat16_t.
template <typename T, float (*kConvert)(uint16_t)>
float Dot16(const char* w_bytes, const float* x, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  const T* w = reinterpret_cast<const T*>(w_bytes);
  auto a0 = hn::Zero(df), a1 = hn::Zero(df);
  size_t j = 0;
  for (; j + 2 * N <= n; j += 2 * N) {
    a0 = hn::MulAdd(Widen16(df, w + j), hn::LoadU(df, x + j), a0);
    a1 = hn::MulAdd(Widen16(df, w + j + N), hn::LoadU(df, x + j + N), a1);
  }
  for (; j + N <= n; j += N) {
    a0 = hn::MulAdd(Widen16(df, w + j), hn::LoadU(df, x + j), a0);
  }
  float tail = 0.0f;
  for (; j < n; ++j) {
    uint16_t h;
    std::memcpy(&h, w_bytes + 2 * j, 2);
    tail += kConvert(h) * x[j];
  }
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, a1))) + tail;
}

#include "kernels/dot_q8-inl.h"

// Quantized weights (wtype Q4_0 or Q8_0) against kVecs prepared vectors.
template <size_t kVecs>
void DotQ8Vecs(DType wtype, const char* w, const XOperand* x, size_t n, float* out,
               const char* pf = nullptr) {
  if (wtype == DType::kQ4_0) {
    DotQ8K<sizeof(BlockQ4_0), kVecs>(w, x, n, out, pf);
  } else {
    DotQ8K<sizeof(BlockQ8_0), kVecs>(w, x, n, out, pf);
  }
}

// Per-thread scratch for prepared activation vectors (grown, never shrunk).
XPair* XScratch(size_t n_pairs) {
  thread_local std::vector<XPair> scratch;
  if (scratch.size() < n_pairs) scratch.resize(n_pairs);
  return scratch.data();
}

float DotQ8One(DType wtype, const char* w, const BlockQ8_0* x, size_t n) {
  const XOperand px = PrepareX(x, n, XScratch(XPairs(n)));
  float out;
  DotQ8Vecs<1>(wtype, w, &px, n, &out);
  return out;
}

// Float lanes for quantized weights against f32: capped so lanes divide 16.
using DQ = hn::CappedTag<float, kQK / 2>;

float DotQ8_0F32(const char* w, const float* x, size_t n) {
  const DQ df;
  const hn::RebindToSigned<DQ> di;
  const hn::Rebind<int8_t, DQ> d8;
  const size_t N = hn::Lanes(df);
  auto acc = hn::Zero(df);
  for (size_t b = 0; b < n / kQK; ++b, w += sizeof(BlockQ8_0), x += kQK) {
    const int8_t* wq = reinterpret_cast<const int8_t*>(w + offsetof(BlockQ8_0, qs));
    auto block = hn::Zero(df);
    for (size_t c = 0; c < kQK; c += N) {
      const auto wv = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, wq + c)));
      block = hn::MulAdd(wv, hn::LoadU(df, x + c), block);
    }
    acc = hn::MulAdd(block, hn::Set(df, LoadScale(w)), acc);
  }
  return hn::GetLane(hn::SumOfLanes(df, acc));
}

float DotQ4_0F32(const char* w, const float* x, size_t n) {
  const DQ df;
  const hn::RebindToSigned<DQ> di;
  const hn::RebindToUnsigned<DQ> du;
  const hn::Rebind<uint8_t, DQ> du8;
  const size_t N = hn::Lanes(df);
  const auto mask = hn::Set(du, 0x0F);
  const auto eight = hn::Set(di, 8);
  auto acc = hn::Zero(df);
  for (size_t b = 0; b < n / kQK; ++b, w += sizeof(BlockQ4_0), x += kQK) {
    const uint8_t* qs = reinterpret_cast<const uint8_t*>(w + offsetof(BlockQ4_0, qs));
    auto block = hn::Zero(df);
    for (size_t c = 0; c < kQK / 2; c += N) {
      const auto packed = hn::PromoteTo(du, hn::LoadU(du8, qs + c));
      const auto lo = hn::ConvertTo(df, hn::Sub(hn::BitCast(di, hn::And(packed, mask)), eight));
      const auto hi = hn::ConvertTo(df, hn::Sub(hn::BitCast(di, hn::ShiftRight<4>(packed)), eight));
      block = hn::MulAdd(lo, hn::LoadU(df, x + c), block);
      block = hn::MulAdd(hi, hn::LoadU(df, x + kQK / 2 + c), block);
    }
    acc = hn::MulAdd(block, hn::Set(df, LoadScale(w)), acc);
  }
  return hn::GetLane(hn::SumOfLanes(df, acc));
}

float DotOne(DType wtype, const char* w, const VecRef& x) {
  switch (wtype) {
    case DType::kF32: return DotF32(w, x.f32, x.n);
    case DType::kF16: return Dot16<hwy::float16_t, F16ToF32>(w, x.f32, x.n);
    case DType::kBF16: return Dot16<hwy::bfloat16_t, BF16ToF32>(w, x.f32, x.n);
    case DType::kQ4_0:
      return x.q8 != nullptr ? DotQ8One(wtype, w, x.q8, x.n) : DotQ4_0F32(w, x.f32, x.n);
    case DType::kQ8_0:
      return x.q8 != nullptr ? DotQ8One(wtype, w, x.q8, x.n) : DotQ8_0F32(w, x.f32, x.n);
  }
  return 0.0f;
}

}  // namespace

float DotRowT(DType wtype, const void* w_row, const VecRef& x) {
  return DotOne(wtype, static_cast<const char*>(w_row), x);
}


// Rows outer, vectors inner: a weight row is read from memory once and from
// L1 for every further group of kMaxVecs vectors. Row r is at
// w + index(r) * row_bytes and its results go to y[i * y_stride + index(r)].
template <typename Index>
void DotRowsMultiImpl(DType wtype, const void* w, size_t row_bytes, size_t n_rows,
                      const Index& index, const VecRef* xs, size_t n_vecs, float* y,
                      size_t y_stride, bool prefetch) {
  constexpr size_t kMaxVecs = 4;
  bool all_q8 = IsBlockQuantized(wtype);
  for (size_t i = 0; i < n_vecs; ++i) all_q8 = all_q8 && xs[i].q8 != nullptr;
  // Prepare every vector once (AVX-512 layout; a no-op on other targets).
  const size_t n = n_vecs > 0 ? xs[0].n : 0;
  thread_local std::vector<XOperand> prepared_vec;
  if (all_q8) {
    prepared_vec.resize(n_vecs);
    XPair* scratch = XScratch(n_vecs * XPairs(n));
    for (size_t i = 0; i < n_vecs; ++i) {
      prepared_vec[i] = PrepareX(xs[i].q8, n, scratch + i * XPairs(n));
    }
  }
  const XOperand* prepared = prepared_vec.data();
  const char* base = static_cast<const char*>(w);
  for (size_t r = 0; r < n_rows; ++r) {
    const size_t at = index(r);
    const char* row = base + at * row_bytes;
    // Scattered rows defeat the hardware prefetcher: the row kRowsAhead on
    // is fetched into L2, a few lines per step of the AVX-512 Q8 kernels
    // (kDotQ8Prefetches), else all at once. Against one burst per row, 8
    // rows ahead (kernels_sparse_rows_benchmark, half a 4b up matrix's rows
    // from DRAM, one thread, session 13, 4 alternations): Q4_0 33.6-37.6 ->
    // 28.7-33.6 us, Q8_0 47.5-50.6 -> 41.6-45.1; 4, 12 and 16 rows ahead
    // were no better, 2 was worse.
    constexpr size_t kRowsAhead = 8;
    const char* pf = prefetch && r + kRowsAhead < n_rows
                         ? base + index(r + kRowsAhead) * row_bytes
                         : nullptr;
    if (pf != nullptr && !(all_q8 && kDotQ8Prefetches)) {
      for (size_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(pf + off, 0, 2);
    }
    if (!all_q8) {
      for (size_t i = 0; i < n_vecs; ++i) y[i * y_stride + at] = DotOne(wtype, row, xs[i]);
      continue;
    }
    for (size_t i = 0; i < n_vecs; i += kMaxVecs) {
      const size_t count = std::min(kMaxVecs, n_vecs - i);
      float out[kMaxVecs];
      const XOperand* px = prepared + i;
      const char* pf_i = i == 0 ? pf : nullptr;
      switch (count) {
        case 4: DotQ8Vecs<4>(wtype, row, px, n, out, pf_i); break;
        case 3: DotQ8Vecs<3>(wtype, row, px, n, out, pf_i); break;
        case 2: DotQ8Vecs<2>(wtype, row, px, n, out, pf_i); break;
        default: DotQ8Vecs<1>(wtype, row, px, n, out, pf_i); break;
      }
      for (size_t k = 0; k < count; ++k) y[(i + k) * y_stride + at] = out[k];
    }
  }
}

void DotRowsMultiT(DType wtype, const void* w, size_t row_bytes, size_t n_rows, const VecRef* xs,
                   size_t n_vecs, float* y, size_t y_stride) {
  DotRowsMultiImpl(wtype, w, row_bytes, n_rows, [](size_t r) { return r; }, xs, n_vecs, y,
                   y_stride, /*prefetch=*/false);
}

void DotRowsIndexedT(DType wtype, const void* w, size_t row_bytes, const uint32_t* rows,
                     size_t n_rows, const VecRef* xs, size_t n_vecs, float* y, size_t y_stride) {
  DotRowsMultiImpl(wtype, w, row_bytes, n_rows, [rows](size_t r) { return size_t{rows[r]}; }, xs,
                   n_vecs, y, y_stride, /*prefetch=*/true);
}

void DotRowsT(DType wtype, const void* w, size_t row_bytes, size_t n_rows, const VecRef& x,
              float* y) {
  DotRowsMultiT(wtype, w, row_bytes, n_rows, &x, 1, y, n_rows);
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace st
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace st {

HWY_EXPORT(DotRowT);
HWY_EXPORT(DotRowsT);
HWY_EXPORT(DotRowsMultiT);
HWY_EXPORT(DotRowsIndexedT);

float DotRow(DType wtype, const void* w_row, const VecRef& x) {
  return HWY_DYNAMIC_DISPATCH(DotRowT)(wtype, w_row, x);
}

void DotRows(DType wtype, const void* w, size_t row_bytes, size_t n_rows, const VecRef& x,
             float* y) {
  HWY_DYNAMIC_DISPATCH(DotRowsT)(wtype, w, row_bytes, n_rows, x, y);
}

void DotRowsMulti(DType wtype, const void* w, size_t row_bytes, size_t n_rows, const VecRef* xs,
                  size_t n_vecs, float* y, size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(DotRowsMultiT)(wtype, w, row_bytes, n_rows, xs, n_vecs, y, y_stride);
}

void DotRowsIndexed(DType wtype, const void* w, size_t row_bytes, const uint32_t* rows,
                    size_t n_rows, const VecRef* xs, size_t n_vecs, float* y, size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(DotRowsIndexedT)(wtype, w, row_bytes, rows, n_rows, xs, n_vecs, y,
                                        y_stride);
}

}  // namespace st
#endif  // HWY_ONCE
