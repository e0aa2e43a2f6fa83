// DenseWeights::MoveToHugePages: the hot matrices move into one 2 MiB-aligned
// arena with their bytes unchanged; tied LM head and embedding stay shared.
#include <cstdint>
#include <cstring>

#include "gtest/gtest.h"
#include "model/config.h"
#include "model/gguf.h"
#include "model/weights.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

bool Inside(const HugePageArena& a, const MatrixRef& m) {
  const char* p = static_cast<const char*>(m.data);
  return p >= a.data() && p + m.rows * m.row_bytes() <= a.data() + a.size();
}

bool SameBytes(const MatrixRef& a, const MatrixRef& b) {
  return a.rows == b.rows && a.cols == b.cols && a.type == b.type &&
         std::memcmp(a.data, b.data, a.rows * a.row_bytes()) == 0;
}

TEST(WeightsHugePagesTest, MovesHotMatricesUnchanged) {
  for (bool tied : {false, true}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    testing::TempDir dir;
    auto path = testing::SynthModel(dir.path(), "tiny", DType::kQ4_0, Gating::kSigmoid, 3, tied);
    ASSERT_TRUE(path.ok()) << path.status();
    auto file = GgufFile::Open(*path);
    ASSERT_TRUE(file.ok()) << file.status();
    auto config = LoadModelConfig(**file);
    ASSERT_TRUE(config.ok()) << config.status();
    auto mapped = DenseWeights::Load(**file, *config);
    auto moved = DenseWeights::Load(**file, *config);
    ASSERT_TRUE(mapped.ok() && moved.ok());
    ASSERT_TRUE(moved->MoveToHugePages().ok());
    ASSERT_EQ(moved->arenas.size(), 1u);
    const HugePageArena& a = *moved->arenas[0];
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % HugePageArena::kHugePage, 0u);
    EXPECT_TRUE(Inside(a, moved->output));
    EXPECT_TRUE(SameBytes(moved->output, mapped->output));
    EXPECT_EQ(moved->token_embd.data == moved->output.data, tied);
    EXPECT_TRUE(SameBytes(moved->token_embd, mapped->token_embd));
    for (size_t l = 0; l < moved->layers.size(); ++l) {
      const LayerWeights &m = moved->layers[l], &r = mapped->layers[l];
      for (auto [x, y] : {std::pair{m.wq, r.wq}, {m.wk, r.wk}, {m.wv, r.wv}, {m.wo, r.wo},
                          {m.router, r.router}}) {
        EXPECT_TRUE(Inside(a, x)) << "layer " << l;
        EXPECT_TRUE(SameBytes(x, y)) << "layer " << l;
        EXPECT_EQ(reinterpret_cast<uintptr_t>(x.data) % 64, 0u);
      }
    }
  }
}

}  // namespace
}  // namespace st
