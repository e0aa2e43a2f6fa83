// st::AttendRing (SIMD, every target) against scalar::AttendRing and against
// a plain double-precision attention over contiguous (non-ring) K/V, for F32,
// F16 and BF16 K/V storage. The reference sees the K/V values the cache holds
// (rounded to the storage type), so rounding of the storage type is not part
// of the error. Bound: |out - ref| <= 1e-5 * max|v| per element (float
// dot/accumulate reordering; scores are O(1) on Gaussian data).
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/fp16.h"
#include "kernels/test_util.h"

namespace st {
namespace {

using ::st::testing::ForEachTarget;
using ::st::testing::Gaussian;

// Positions 0..n_pos-1 of K and V stored contiguously ([pos][kv_head][d]),
// plus a ring of `capacity` slots (row_stride >= kv width, padded) holding
// the last `capacity` positions, written in increasing position order.
// Rounds x to the storage type and returns its bits (as in KvCache::Store),
// stored in `bytes` bytes (4 for F32, 2 otherwise).
uint32_t Encode(DType type, float x) {
  if (type == DType::kF16) return F32ToF16(x);
  if (type == DType::kBF16) return F32ToBF16(x);
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
float Decode(DType type, uint32_t bits) {
  if (type == DType::kF16) return F16ToF32(static_cast<uint16_t>(bits));
  if (type == DType::kBF16) return BF16ToF32(static_cast<uint16_t>(bits));
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

struct Cache {
  AttentionShape shape;
  DType type;
  std::vector<float> k_plain, v_plain;  // values as stored (already rounded)
  std::vector<uint8_t> k_ring, v_ring;
  size_t width = 0, stride = 0, elem = 4;
  int64_t capacity = 0;

  Cache(AttentionShape s, int64_t n_pos, int64_t cap, size_t pad, DType t = DType::kF32)
      : shape(s), type(t), capacity(cap) {
    width = static_cast<size_t>(s.n_kv_heads * s.head_dim);
    stride = width + pad;
    elem = t == DType::kF32 ? 4 : 2;
    k_plain = Gaussian(n_pos * width, 1);
    v_plain = Gaussian(n_pos * width, 2);
    k_ring.assign(cap * stride * elem, 0xFF);  // padding and unused slots poison (NaN)
    v_ring.assign(cap * stride * elem, 0xFF);
    for (int64_t p = 0; p < n_pos; ++p) {
      for (size_t i = 0; i < width; ++i) {
        Put(k_ring, (p % cap) * stride + i, k_plain[p * width + i]);
        Put(v_ring, (p % cap) * stride + i, v_plain[p * width + i]);
      }
    }
  }
  // Stores x rounded to the type at element index i, and rounds x in place.
  void Put(std::vector<uint8_t>& ring, size_t i, float& x) {
    const uint32_t bits = Encode(type, x);
    std::memcpy(&ring[i * elem], &bits, elem);  // little-endian low bytes
    x = Decode(type, bits);
  }
  KvRingView view() const { return {k_ring.data(), v_ring.data(), stride, capacity, type}; }

  // Plain attention in double over positions [lo, hi].
  std::vector<float> Reference(const std::vector<float>& q, int64_t lo, int64_t hi) const {
    const int hd = shape.head_dim, group = shape.n_heads / shape.n_kv_heads;
    std::vector<float> out(shape.n_heads * hd);
    for (int h = 0; h < shape.n_heads; ++h) {
      const size_t off = static_cast<size_t>(h / group) * hd;
      std::vector<double> s;
      for (int64_t p = lo; p <= hi; ++p) {
        double dot = 0.0;
        for (int d = 0; d < hd; ++d) dot += double(q[h * hd + d]) * k_plain[p * width + off + d];
        s.push_back(dot / std::sqrt(double(hd)));
      }
      const double mx = *std::max_element(s.begin(), s.end());
      double sum = 0.0;
      for (double& e : s) sum += (e = std::exp(e - mx));
      for (int d = 0; d < hd; ++d) {
        double o = 0.0;
        for (int64_t p = lo; p <= hi; ++p) o += s[p - lo] / sum * v_plain[p * width + off + d];
        out[h * hd + d] = static_cast<float>(o);
      }
    }
    return out;
  }
};

void ExpectClose(const std::vector<float>& a, const std::vector<float>& b, const Cache& c) {
  float vmax = 0.0f;
  for (float v : c.v_plain) vmax = std::max(vmax, std::fabs(v));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5f * vmax) << "i=" << i;
}

constexpr DType kTypes[] = {DType::kF32, DType::kF16, DType::kBF16};

TEST(AttentionTest, HandComputed) {
  // One head, head_dim 4: scores 0 and (2 * ln 3) / sqrt(4) = ln 3 ->
  // weights 1/4, 3/4.
  const AttentionShape shape{1, 1, 4};
  const float q[4] = {2, 0, 0, 0};
  const float k[8] = {0, 0, 0, 0, std::log(3.0f), 0, 0, 0};
  const float v[8] = {4, 0, 0, 0, 0, 4, 8, 0};
  float out[4], scratch[2];
  const KvRingView kv{k, v, 4, 2};
  AttendRing(shape, q, kv, 0, 1, out, scratch);
  EXPECT_NEAR(out[0], 1.0f, 1e-6f);
  EXPECT_NEAR(out[1], 3.0f, 1e-6f);
  EXPECT_NEAR(out[2], 6.0f, 1e-6f);
  EXPECT_NEAR(out[3], 0.0f, 1e-6f);
  // A single key: output is exactly its value.
  AttendRing(shape, q, kv, 1, 1, out, scratch);
  EXPECT_EQ(out[1], 4.0f);
  EXPECT_EQ(out[2], 8.0f);
}

// Sliding window (lo > 0) over a wrapped ring equals plain attention over
// contiguous K/V, for the SIMD (all targets) and scalar versions and every
// K/V type. GQA groups 3, 5, 7 and 8 (head blocks of 4 with every remainder)
// and 1; head_dim 128 (model), 20 and 7 (SIMD tails), 1.
TEST(AttentionTest, WindowedRingMatchesPlain) {
  struct Case { int n_heads, n_kv_heads, hd; };
  for (DType type : kTypes)
  for (Case sc : {Case{6, 2, 128}, Case{6, 2, 20}, Case{5, 1, 7}, Case{14, 2, 33},
                  Case{16, 2, 16}, Case{3, 3, 1}}) {
    const int hd = sc.hd;
    const AttentionShape shape{sc.n_heads, sc.n_kv_heads, hd};
    const int64_t n_pos = 45, cap = 16;
    const Cache c(shape, n_pos, cap, /*pad=*/3, type);
    const std::vector<float> q = Gaussian(shape.n_heads * hd, 3);
    struct Window { int64_t lo, hi; };
    // hi = 44 lives in slot 12; [29, 44] wraps through slot 0 of the ring.
    for (Window w : {Window{29, 44}, Window{33, 44}, Window{44, 44}, Window{37, 40}}) {
      SCOPED_TRACE(::testing::Message() << DTypeName(type) << " heads=" << sc.n_heads << "/"
                                        << sc.n_kv_heads << " hd=" << hd << " lo=" << w.lo
                                        << " hi=" << w.hi);
      const std::vector<float> ref = c.Reference(q, w.lo, w.hi);
      std::vector<float> out(q.size()), scratch(w.hi - w.lo + 1);
      scalar::AttendRing(shape, q.data(), c.view(), w.lo, w.hi, out.data(), scratch.data());
      ExpectClose(out, ref, c);
      ForEachTarget([&] {
        std::fill(out.begin(), out.end(), NAN);
        AttendRing(shape, q.data(), c.view(), w.lo, w.hi, out.data(), scratch.data());
        ExpectClose(out, ref, c);
      });
    }
  }
}

// No wrap (lo = 0, capacity large): SIMD vs scalar twin at the 4B and 21B
// shapes (groups of 6 and 7 query heads: one block each on AVX-512) and 32
// over 4 (a group of 8, the largest block).
TEST(AttentionTest, SimdMatchesScalarNoWrap) {
  for (DType type : kTypes)
  for (const AttentionShape shape : {AttentionShape{12, 2, 128}, AttentionShape{28, 4, 128},
                                     AttentionShape{32, 4, 128}}) {
    SCOPED_TRACE(std::string(DTypeName(type)) + " heads " + std::to_string(shape.n_heads));
    const Cache c(shape, 100, 128, 0, type);
    const std::vector<float> q = Gaussian(shape.n_heads * 128, 4);
    std::vector<float> ref(q.size()), out(q.size()), scratch(100);
    scalar::AttendRing(shape, q.data(), c.view(), 0, 99, ref.data(), scratch.data());
    ForEachTarget([&] {
      AttendRing(shape, q.data(), c.view(), 0, 99, out.data(), scratch.data());
      ExpectClose(out, ref, c);
    });
  }
}

// Windows longer than a Values chunk (128 keys) that wrap the ring, with
// key counts that leave 1-3 keys after Scores' passes of 3 or 4, at the 4B
// and 21B shapes: every target against the plain reference, and bit for bit
// the same numbers as the same window in a ring where it does not wrap
// (the kernel's order of operations does not depend on the wrap).
TEST(AttentionTest, LongWrappedWindowsMatchPlain) {
  for (DType type : {DType::kF32, DType::kF16})
  for (const AttentionShape shape : {AttentionShape{12, 2, 128}, AttentionShape{28, 4, 128}}) {
    const int64_t n_pos = 210, hi = n_pos - 1;  // hi lives in slot 9 of 200
    const Cache wrapped(shape, n_pos, 200, /*pad=*/5, type);
    const Cache plain(shape, n_pos, 256, /*pad=*/5, type);
    const std::vector<float> q = Gaussian(shape.n_heads * 128, 5);
    for (int64_t n_keys : {200, 199, 130, 129, 127}) {
      const int64_t lo = hi - n_keys + 1;  // lo % 200 > hi % 200: every window wraps
      SCOPED_TRACE(::testing::Message() << DTypeName(type) << " heads=" << shape.n_heads
                                        << " keys=" << n_keys);
      const std::vector<float> ref = wrapped.Reference(q, lo, hi);
      std::vector<float> out(q.size()), unwrapped(q.size()), scratch(n_keys);
      ForEachTarget([&] {
        std::fill(out.begin(), out.end(), NAN);
        AttendRing(shape, q.data(), wrapped.view(), lo, hi, out.data(), scratch.data());
        ExpectClose(out, ref, wrapped);
        AttendRing(shape, q.data(), plain.view(), lo, hi, unwrapped.data(), scratch.data());
        for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], unwrapped[i]) << "i=" << i;
      });
    }
  }
}

// KvRingView::Columns selects one kv head: attending with group heads over
// Columns(h * hd) with a one-kv-head shape equals the full computation.
TEST(AttentionTest, ColumnsSelectsKvHead) {
  for (DType type : kTypes) {
    SCOPED_TRACE(DTypeName(type));
    const AttentionShape shape{8, 4, 24};
    const Cache c(shape, 30, 32, 5, type);
    const std::vector<float> q = Gaussian(shape.n_heads * 24, 5);
    std::vector<float> full(q.size()), part(q.size()), scratch(30);
    AttendRing(shape, q.data(), c.view(), 0, 29, full.data(), scratch.data());
    for (int h = 0; h < 4; ++h) {
      AttendRing(AttentionShape{2, 1, 24}, q.data() + h * 48, c.view().Columns(h * 24), 0, 29,
                 part.data() + h * 48, scratch.data());
    }
    EXPECT_EQ(full, part);
  }
}

// The softmax's e^x (ExpF, kernels/exp_f32.h) is bit-identical between the
// kernel (16 lanes at a time on AVX-512) and the twin, including the keys so
// far below the best one (|s - max| >= 88) that ExpF hands them to std::exp.
// Scores here are exact in any summation order (small integers), and V is
// one-hot (key i is 1 in dimension i only), so out[i] = p_i: the twin's and
// the kernel's probabilities must be equal, not merely close.
TEST(AttentionTest, SoftmaxProbabilitiesEqualTheTwinsExactly) {
  constexpr int kHd = 48;
  for (int n_keys : {5, 16, 32, 37, 48}) {
    SCOPED_TRACE(n_keys);
    const AttentionShape shape{1, 1, kHd};
    std::vector<float> k(static_cast<size_t>(n_keys) * kHd), v(k.size(), 0.0f), q(kHd);
    for (int d = 0; d < kHd; ++d) q[d] = static_cast<float>(3 * (d % 7 - 3));
    for (int i = 0; i < n_keys; ++i) {
      // Scores spread so that, from 16 keys on, some lie within 88 of the
      // maximum, some 88-104 below it (ExpF's std::exp range, denormal
      // results) and some further (e^x underflows to 0).
      for (int d = 0; d < kHd; ++d) k[i * kHd + d] = static_cast<float>(((i * 37 + d * 11) % 61) - 30);
      v[i * kHd + i % kHd] = 1.0f;
    }
    const KvRingView view{k.data(), v.data(), kHd, n_keys, DType::kF32};
    std::vector<float> ref(kHd), out(kHd), scratch(n_keys);
    scalar::AttendRing(shape, q.data(), view, 0, n_keys - 1, ref.data(), scratch.data());
    int zero = 0;  // keys whose e^x underflows to 0 (the test reaches that range)
    for (int i = 0; i < std::min(n_keys, kHd); ++i) zero += ref[i] == 0.0f;
    if (n_keys >= 16) {
      EXPECT_GT(zero, 0);
    }
    ForEachTarget([&] {
      AttendRing(shape, q.data(), view, 0, n_keys - 1, out.data(), scratch.data());
      for (int d = 0; d < kHd; ++d) ASSERT_EQ(out[d], ref[d]) << "dimension " << d;
    });
  }
}

}  // namespace
}  // namespace st
