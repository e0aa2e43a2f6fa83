#include "common/cpu_affinity.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace st {
namespace {

TEST(CpuAffinityTest, ParsesNumbersAndRangesInTheOrderGiven) {
  const std::vector<int> allowed = AllowedCpus();
  ASSERT_FALSE(allowed.empty());
  const int a = allowed.front(), b = allowed.back();
  EXPECT_EQ(*ParseCpuList(absl::StrCat(a)), std::vector<int>{a});
  EXPECT_EQ(*ParseCpuList(absl::StrCat(" ", a, " ")), std::vector<int>{a});
  if (a != b) {
    EXPECT_EQ(*ParseCpuList(absl::StrCat(b, ",", a)), (std::vector<int>{b, a}));
  }
  // A range over consecutive allowed CPUs.
  size_t i = 0;
  while (i + 1 < allowed.size() && allowed[i + 1] != allowed[i] + 1) ++i;
  if (i + 1 < allowed.size()) {
    const int lo = allowed[i], hi = allowed[i + 1];
    EXPECT_EQ(*ParseCpuList(absl::StrCat(lo, "-", hi)), (std::vector<int>{lo, hi}));
  }
  EXPECT_EQ(FormatCpuList({0, 1, 2, 3, 6, 8, 9}), "0-3,6,8-9");
  EXPECT_EQ(FormatCpuList({5}), "5");
  EXPECT_EQ(FormatCpuList({}), "");
}

TEST(CpuAffinityTest, RefusesBadListsNamingThePart) {
  const int a = AllowedCpus().front();
  struct Case {
    std::string text, names;
  };
  const std::vector<Case> cases = {
      {"", "is not a CPU number"},
      {"x", "'x' is not a CPU number"},
      {"-1", "'-1' is not a range"},
      {"3-1", "'3-1' is not a range"},
      {"1-", "'1-' is not a range"},
      {absl::StrCat(a, ",,", a), "'' is not a CPU number"},
      {absl::StrCat(a, ",", a), absl::StrCat("lists CPU ", a, " twice")},
      {"100000", "names CPU 100000, which this process may not use (it may use "},
  };
  for (const Case& c : cases) {
    auto cpus = ParseCpuList(c.text);
    ASSERT_FALSE(cpus.ok()) << c.text;
    EXPECT_EQ(cpus.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(cpus.status().message().find(c.names), std::string::npos)
        << c.text << ": " << cpus.status().message();
  }
}

}  // namespace
}  // namespace st
