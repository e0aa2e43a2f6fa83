// KvCache: StoreColumns of disjoint column ranges (as the decode attention
// items store their own kv head) writes exactly what one Store of the row
// writes, for every KV type and across the ring's wrap.
#include "model/kv_cache.h"

#include <cstring>
#include <random>
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
// zeroed; a small one in ordinary memory; both hold what is stored.
TEST(KvCacheTest, LargeCachesLiveInHugePagesAndStartZeroed) {
  ModelConfig c = Config();
  c.n_kv_heads = 8;
  c.head_dim = 128;  // kv_dim 1024: 4 KiB of F16 K and V per position and layer
  const int64_t big_tokens = KvCache::kHugePagesFrom / (4 * 1024) + 64;
  KvCache small(c, 64, 1), big(c, big_tokens, 1);
  EXPECT_FALSE(small.in_huge_pages());
  EXPECT_EQ(big.in_huge_pages(), TransparentHugePagesAvailable());
  EXPECT_EQ(big.bytes(), KvCache::BytesFor(c, big_tokens, 1));
  std::vector<float> k(c.kv_dim()), v(c.kv_dim());
  for (int i = 0; i < c.kv_dim(); ++i) k[i] = 0.25f * i, v[i] = -0.5f * i;
  for (KvCache* cache : {&small, &big}) {
    for (int layer = 0; layer < 2; ++layer) {
      const KvRingView view = cache->View(layer);
      const auto* k0 = static_cast<const uint16_t*>(view.k);
      for (int i = 0; i < c.kv_dim(); ++i) ASSERT_EQ(k0[i], 0) << "layer " << layer;
      cache->Store(layer, 3, k.data(), v.data());
      const auto* k3 = static_cast<const uint16_t*>(view.k) + 3 * view.row_stride;
      const auto* v3 = static_cast<const uint16_t*>(view.v) + 3 * view.row_stride;
      for (int i = 0; i < c.kv_dim(); ++i) {
        ASSERT_EQ(F16ToF32(k3[i]), k[i]);
        ASSERT_EQ(F16ToF32(v3[i]), v[i]);
      }
    }
    // Layer 1 (a ring of 4 slots) starts after layer 0's K and V.
    EXPECT_EQ(static_cast<const char*>(cache->View(1).k),
              static_cast<const char*>(cache->View(0).v) + cache->capacity(0) * c.kv_dim() * 2);
  }
}

}  // namespace
}  // namespace st
