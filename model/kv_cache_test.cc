// KvCache: StoreColumns of disjoint column ranges (as the decode attention
// items store their own kv head) writes exactly what one Store of the row
// writes, for every KV type and across the ring's wrap.
#include "model/kv_cache.h"

#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"

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

}  // namespace
}  // namespace st
