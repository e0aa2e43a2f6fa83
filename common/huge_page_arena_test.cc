// HugePageArena: alignment, size rounding, zero fill, writability.
#include "common/huge_page_arena.h"

#include <cstdint>
#include <cstring>

#include "gtest/gtest.h"

namespace st {
namespace {

TEST(HugePageArenaTest, AlignedRoundedZeroedWritable) {
  auto arena = HugePageArena::Create(3 * 1000 * 1000);
  ASSERT_TRUE(arena.ok()) << arena.status();
  HugePageArena& a = **arena;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % HugePageArena::kHugePage, 0u);
  EXPECT_EQ(a.size(), 2 * HugePageArena::kHugePage);
  for (size_t i = 0; i < a.size(); i += 4096) ASSERT_EQ(a.data()[i], 0) << i;
  std::memset(a.data(), 7, a.size());
  EXPECT_EQ(a.data()[a.size() - 1], 7);
  if (TransparentHugePagesAvailable()) {
    EXPECT_TRUE(a.huge_pages_advised());
  }
  EXPECT_LE(a.HugePageBytes(), a.size() + HugePageArena::kHugePage);
}

TEST(HugePageArenaTest, ZeroBytesIsAnError) {
  EXPECT_FALSE(HugePageArena::Create(0).ok());
}

}  // namespace
}  // namespace st
