#include "common/units.h"

#include <cstdint>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace st {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = kKiB * 1024;
constexpr uint64_t kGiB = kMiB * 1024;
constexpr uint64_t kTiB = kGiB * 1024;

TEST(ParseByteSizeTest, ParsesNumbersAndBinaryUnits) {
  const struct {
    const char* text;
    uint64_t bytes;
  } cases[] = {
      {"4096", 4096},
      {"0", 0},
      {"1B", 1},
      {"64K", 64 * kKiB},
      {"64kb", 64 * kKiB},
      {"512M", 512 * kMiB},
      {"512 MiB", 512 * kMiB},
      {"1GiB", kGiB},
      {"8gb", 8 * kGiB},
      {"1.5G", kGiB + kGiB / 2},
      {"0.5KiB", 512},
      {" 2T ", 2 * kTiB},
      // Above INT64_MAX but below 2^64: 10^7 * 2^40 is exact in a double.
      {"10000000T", 10000000 * kTiB},
  };
  for (const auto& c : cases) {
    absl::StatusOr<uint64_t> bytes = ParseByteSize(c.text);
    ASSERT_TRUE(bytes.ok()) << c.text << ": " << bytes.status();
    EXPECT_EQ(*bytes, c.bytes) << c.text;
  }
}

TEST(ParseByteSizeTest, RejectsMalformedInputNamingIt) {
  for (const char* text : {"", "   ", "abc", "1XB", "-1", "G", "1.2.3", "1 0", "1e3",
                           "18446744073709551616", "20000000T"}) {
    absl::StatusOr<uint64_t> bytes = ParseByteSize(text);
    ASSERT_FALSE(bytes.ok()) << "'" << text << "' parsed as " << *bytes;
    EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(bytes.status().message()), HasSubstr("'" + std::string(text))) << text;
  }
}

TEST(FormatBytesTest, PicksTheLargestUnitBelowTheValue) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1536), "1.50 KiB");
  EXPECT_EQ(FormatBytes(kGiB + kGiB / 2), "1.50 GiB");
  EXPECT_EQ(FormatBytes(3 * kTiB), "3.00 TiB");
  EXPECT_EQ(FormatBytes(4096 * kTiB), "4096.00 TiB");
}

TEST(FormatBytesTest, RoundTripsThroughParse) {
  for (uint64_t bytes : {uint64_t{1}, 3 * kKiB, 5 * kMiB / 2, 7 * kGiB}) {
    absl::StatusOr<uint64_t> parsed = ParseByteSize(FormatBytes(bytes));
    ASSERT_TRUE(parsed.ok()) << FormatBytes(bytes);
    EXPECT_EQ(*parsed, bytes);
  }
}

}  // namespace
}  // namespace st
