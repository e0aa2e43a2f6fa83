// KvCache: StoreColumns of disjoint column ranges (as the decode attention
// items store their own kv head) writes exactly what one Store of the row
// writes, for every KV type and across the ring's wrap.
#include "model/kv_cache.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/fp16.h"

namespace st {
namespace {

ModelConfig Config() {
  ModelConfig c;
  c.d_model = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.layers.resize(2);
  c.layers[1].window = 4;  // a ring of window + batch - 1 rows
  return c;
}

TEST(KvCacheTest, StoreColumnsOfEveryHeadEqualsOneStore) {
  const ModelConfig c = Config();
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (DType type : {DType::kF16, DType::kBF16, DType::kF32}) {
    KvCache whole(c, 16, 1, type), heads(c, 16, 1, type);
    for (int layer = 0; layer < 2; ++layer) {
      for (int64_t pos = 0; pos < 9; ++pos) {  // layer 1's ring of 4 wraps
        std::vector<float> k(c.kv_dim()), v(c.kv_dim());
        for (float& x : k) x = normal(rng);
        for (float& x : v) x = normal(rng);
        whole.Store(layer, pos, k.data(), v.data());
        for (int h = c.n_kv_heads - 1; h >= 0; --h) {
          heads.StoreColumns(layer, pos, h * c.head_dim, c.head_dim, k.data() + h * c.head_dim,
                             v.data() + h * c.head_dim);
        }
        const KvRingView a = whole.View(layer), b = heads.View(layer);
        ASSERT_EQ(a.capacity, b.capacity);
        const size_t bytes = static_cast<size_t>(a.capacity) * a.row_stride * a.elem_bytes();
        EXPECT_EQ(std::memcmp(a.k, b.k, bytes), 0) << DTypeName(type) << " layer " << layer;
        EXPECT_EQ(std::memcmp(a.v, b.v, bytes), 0) << DTypeName(type) << " layer " << layer;
      }
    }
  }
}

// A large cache lives in one huge-page mapping, layer after layer, starting
// zeroed and keeping its contents when moved; a small one in ordinary
// memory; both hold what is stored.
TEST(KvCacheTest, LargeCachesLiveInHugePagesAndStartZeroed) {
  ModelConfig c = Config();
  c.n_kv_heads = 8;
  c.head_dim = 128;  // kv_dim 1024: 4 KiB of F16 K and V per position and layer
  const int64_t big_tokens = KvCache::kHugePagesFrom / (4 * 1024) + 64;
  KvCache small(c, 64, 1), big(c, big_tokens, 1);
  EXPECT_FALSE(small.in_huge_pages());
  if (TransparentHugePagesAvailable()) {
    EXPECT_TRUE(big.in_huge_pages());
  }
  EXPECT_GE(big.bytes(), KvCache::kHugePagesFrom);
  std::vector<float> k(c.kv_dim()), v(c.kv_dim());
  for (int i = 0; i < c.kv_dim(); ++i) k[i] = 0.25f * i, v[i] = -0.5f * i;
  auto check_row = [&](const KvCache& cache, int layer) {
    const KvRingView view = cache.View(layer);
    const auto* k3 = static_cast<const uint16_t*>(view.k) + 3 * view.row_stride;
    const auto* v3 = static_cast<const uint16_t*>(view.v) + 3 * view.row_stride;
    for (int i = 0; i < c.kv_dim(); ++i) {
      ASSERT_EQ(F16ToF32(k3[i]), k[i]);
      ASSERT_EQ(F16ToF32(v3[i]), v[i]);
    }
  };
  for (KvCache* cache : {&small, &big}) {
    for (int layer = 0; layer < 2; ++layer) {
      const KvRingView view = cache->View(layer);
      const size_t n = static_cast<size_t>(cache->capacity(layer)) * c.kv_dim();
      for (const void* kv : {view.k, view.v}) {
        const auto* e = static_cast<const uint16_t*>(kv);
        ASSERT_EQ(std::count(e, e + n, uint16_t{0}), static_cast<std::ptrdiff_t>(n));
      }
      cache->Store(layer, 3, k.data(), v.data());
      check_row(*cache, layer);
    }
    // Layer 1 (a ring of 4 slots) starts after layer 0's K and V.
    EXPECT_EQ(static_cast<const char*>(cache->View(1).k),
              static_cast<const char*>(cache->View(0).v) + cache->capacity(0) * c.kv_dim() * 2);
  }
  const void* big_k = big.View(0).k;
  KvCache moved(std::move(big));
  EXPECT_EQ(moved.View(0).k, big_k);
  if (TransparentHugePagesAvailable()) {
    EXPECT_TRUE(moved.in_huge_pages());
  }
  for (int layer = 0; layer < 2; ++layer) check_row(moved, layer);
}
}  // namespace
}  // namespace st
