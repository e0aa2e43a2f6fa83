// st::AttendRing (SIMD, every target) against scalar::AttendRing and against
// a plain double-precision attention over contiguous (non-ring) K/V.
// Bound: |out - ref| <= 1e-5 * max|v| per element (float dot/accumulate
// reordering; scores are O(1) on Gaussian data).
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/test_util.h"

namespace st {
namespace {

using ::st::testing::ForEachTarget;
using ::st::testing::Gaussian;

// Positions 0..n_pos-1 of K and V stored contiguously ([pos][kv_head][d]),
// plus a ring of `capacity` slots (row_stride >= kv width, padded) holding
// the last `capacity` positions, written in increasing position order.
struct Cache {
  AttentionShape shape;
  std::vector<float> k_plain, v_plain, k_ring, v_ring;
  size_t width = 0, stride = 0;
  int64_t capacity = 0;

  Cache(AttentionShape s, int64_t n_pos, int64_t cap, size_t pad) : shape(s), capacity(cap) {
    width = static_cast<size_t>(s.n_kv_heads * s.head_dim);
    stride = width + pad;
    k_plain = Gaussian(n_pos * width, 1);
    v_plain = Gaussian(n_pos * width, 2);
    k_ring.assign(cap * stride, NAN);  // padding and unused slots poison
    v_ring.assign(cap * stride, NAN);
    for (int64_t p = 0; p < n_pos; ++p) {
      std::copy_n(&k_plain[p * width], width, &k_ring[(p % cap) * stride]);
      std::copy_n(&v_plain[p * width], width, &v_ring[(p % cap) * stride]);
    }
  }
  KvRingView view() const { return {k_ring.data(), v_ring.data(), stride, capacity}; }

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
// contiguous K/V, for the SIMD (all targets) and scalar versions. GQA group
// 3; head_dim 128 (model) and 20 (SIMD tail).
TEST(AttentionTest, WindowedRingMatchesPlain) {
  for (int hd : {128, 20}) {
    const AttentionShape shape{6, 2, hd};
    const int64_t n_pos = 45, cap = 16;
    const Cache c(shape, n_pos, cap, /*pad=*/3);
    const std::vector<float> q = Gaussian(shape.n_heads * hd, 3);
    struct Window { int64_t lo, hi; };
    // hi = 44 lives in slot 12; [29, 44] wraps through slot 0 of the ring.
    for (Window w : {Window{29, 44}, Window{33, 44}, Window{44, 44}, Window{37, 40}}) {
      SCOPED_TRACE(::testing::Message() << "hd=" << hd << " lo=" << w.lo << " hi=" << w.hi);
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

// No wrap (lo = 0, capacity large): SIMD vs scalar twin at the 4B shape.
TEST(AttentionTest, SimdMatchesScalarNoWrap) {
  const AttentionShape shape{32, 4, 128};
  const Cache c(shape, 100, 128, 0);
  const std::vector<float> q = Gaussian(shape.n_heads * 128, 4);
  std::vector<float> ref(q.size()), out(q.size()), scratch(100);
  scalar::AttendRing(shape, q.data(), c.view(), 0, 99, ref.data(), scratch.data());
  ForEachTarget([&] {
    AttendRing(shape, q.data(), c.view(), 0, 99, out.data(), scratch.data());
    ExpectClose(out, ref, c);
  });
}

}  // namespace
}  // namespace st
