// scalar::DotRow: the plain C++ reference for st::DotRow (dot_simd.cc).
//
// Float paths (F32/F16/BF16 and quantized weights against f32) accumulate in
// double, so the reference is more accurate than any SIMD float variant.
// Quantized weights against Q8_0 activations follow ggml's
// ggml_vec_dot_q{4,8}_0_q8_0: an exact int32 dot per block, then
// sum += float(sumi) * (d_w * d_x) in float, block by block.
#include <cstring>

#include "glog/logging.h"
#include "kernels/dot.h"
#include "kernels/fp16.h"

namespace st::scalar {
namespace {

uint16_t LoadU16(const char* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

float DotF32(const char* w, const float* x, size_t n) {
  double sum = 0.0;
  for (size_t j = 0; j < n; ++j) {
    float wj;
    std::memcpy(&wj, w + 4 * j, 4);
    sum += static_cast<double>(wj) * x[j];
  }
  return static_cast<float>(sum);
}

template <float (*kConvert)(uint16_t)>
float Dot16(const char* w, const float* x, size_t n) {
  double sum = 0.0;
  for (size_t j = 0; j < n; ++j) sum += static_cast<double>(kConvert(LoadU16(w + 2 * j))) * x[j];
  return static_cast<float>(sum);
}

float DotQ4_0F32(const char* w, const float* x, size_t n) {
  double sum = 0.0;
  for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
    BlockQ4_0 blk;
    std::memcpy(&blk, w + b * sizeof(BlockQ4_0), sizeof(blk));
    double block = 0.0;
    for (size_t j = 0; j < kQK / 2; ++j) {
      block += ((blk.qs[j] & 0x0F) - 8) * static_cast<double>(x[j]);
      block += ((blk.qs[j] >> 4) - 8) * static_cast<double>(x[j + kQK / 2]);
    }
    sum += block * F16ToF32(blk.d);
  }
  return static_cast<float>(sum);
}

float DotQ8_0F32(const char* w, const float* x, size_t n) {
  double sum = 0.0;
  for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
    BlockQ8_0 blk;
    std::memcpy(&blk, w + b * sizeof(BlockQ8_0), sizeof(blk));
    double block = 0.0;
    for (size_t j = 0; j < kQK; ++j) block += blk.qs[j] * static_cast<double>(x[j]);
    sum += block * F16ToF32(blk.d);
  }
  return static_cast<float>(sum);
}

float DotQ4_0Q8_0(const char* w, const BlockQ8_0* x, size_t n) {
  float sum = 0.0f;
  for (size_t b = 0; b < n / kQK; ++b) {
    BlockQ4_0 blk;
    std::memcpy(&blk, w + b * sizeof(BlockQ4_0), sizeof(blk));
    int32_t sumi = 0;
    for (size_t j = 0; j < kQK / 2; ++j) {
      sumi += ((blk.qs[j] & 0x0F) - 8) * x[b].qs[j];
      sumi += ((blk.qs[j] >> 4) - 8) * x[b].qs[j + kQK / 2];
    }
    sum += static_cast<float>(sumi) * (F16ToF32(blk.d) * F16ToF32(x[b].d));
  }
  return sum;
}

float DotQ8_0Q8_0(const char* w, const BlockQ8_0* x, size_t n) {
  float sum = 0.0f;
  for (size_t b = 0; b < n / kQK; ++b) {
    BlockQ8_0 blk;
    std::memcpy(&blk, w + b * sizeof(BlockQ8_0), sizeof(blk));
    int32_t sumi = 0;
    for (size_t j = 0; j < kQK; ++j) sumi += blk.qs[j] * x[b].qs[j];
    sum += static_cast<float>(sumi) * (F16ToF32(blk.d) * F16ToF32(x[b].d));
  }
  return sum;
}

}  // namespace

float DotRow(DType wtype, const void* w_row, const VecRef& x) {
  const char* w = static_cast<const char*>(w_row);
  switch (wtype) {
    case DType::kF32: return DotF32(w, x.f32, x.n);
    case DType::kF16: return Dot16<F16ToF32>(w, x.f32, x.n);
    case DType::kBF16: return Dot16<BF16ToF32>(w, x.f32, x.n);
    case DType::kQ4_0:
      DCHECK_EQ(x.n % kQK, 0u);
      return x.q8 != nullptr ? DotQ4_0Q8_0(w, x.q8, x.n) : DotQ4_0F32(w, x.f32, x.n);
    case DType::kQ8_0:
      DCHECK_EQ(x.n % kQK, 0u);
      return x.q8 != nullptr ? DotQ8_0Q8_0(w, x.q8, x.n) : DotQ8_0F32(w, x.f32, x.n);
  }
  LOG(FATAL) << "DotRow: bad dtype " << static_cast<uint32_t>(wtype);
  return 0.0f;
}

}  // namespace st::scalar
