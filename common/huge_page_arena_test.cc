// HugePageArena: alignment, size rounding, zero fill, writability.
#include "common/huge_page_arena.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

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

// The VmFlags line of /proc/self/smaps for the mapping holding `p`.
std::string VmFlagsAt(const void* p) {
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool inside = false;
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  while (std::getline(in, line)) {
    uintptr_t start = 0, end = 0;
    char dash = 0;
    std::istringstream header(line);
    if (header >> std::hex >> start >> dash >> end && dash == '-') {
      inside = start <= at && at < end;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line + " ";
  }
  return "";
}

// Only the 2 MiB pages the requested bytes fill are advised for huge
// pages: khugepaged would collapse a partly used one into a whole 2 MiB of
// RSS (max_ptes_none 511), which a memory budget did not plan for.
TEST(HugePageArenaTest, OnlyFilledHugePagesAreAdvised) {
  if (!TransparentHugePagesAvailable()) GTEST_SKIP() << "no transparent huge pages here";
  auto arena = HugePageArena::Create(3 * 1000 * 1000);
  ASSERT_TRUE(arena.ok()) << arena.status();
  const char* data = (*arena)->data();
  EXPECT_NE(VmFlagsAt(data).find(" hg "), std::string::npos) << VmFlagsAt(data);
  const char* tail = data + HugePageArena::kHugePage + 4096;
  EXPECT_NE(VmFlagsAt(tail).find(" nh "), std::string::npos) << VmFlagsAt(tail);
  EXPECT_EQ(VmFlagsAt(tail).find(" hg "), std::string::npos) << VmFlagsAt(tail);
  auto small = HugePageArena::Create(100 * 1000);
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_NE(VmFlagsAt((*small)->data()).find(" nh "), std::string::npos);
  EXPECT_TRUE((*small)->huge_pages_advised());
}

TEST(HugePageArenaTest, ZeroBytesIsAnError) {
  EXPECT_FALSE(HugePageArena::Create(0).ok());
}

}  // namespace
}  // namespace st
