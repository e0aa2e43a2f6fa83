#include "kernels/memory_bandwidth.h"

#include <numeric>
#include <vector>

#include "gtest/gtest.h"

namespace st {
namespace {

TEST(StreamReadSumTest, EqualsPlainSumForOddLengthsAndOffsets) {
  std::vector<uint64_t> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = i * 0x9E3779B97F4A7C15ull;
  for (size_t off : {0, 1, 3}) {
    for (size_t n : {0, 1, 7, 31, 64, 65, 997}) {
      const uint64_t want = std::accumulate(v.begin() + off, v.begin() + off + n, uint64_t{0});
      EXPECT_EQ(StreamReadSum(v.data() + off, n), want) << off << " " << n;
    }
  }
}

TEST(MeasureReadBandwidthTest, ReportsAPositiveRate) {
  ThreadPool pool(2);
  BandwidthResult r = MeasureReadBandwidth(pool, size_t{16} << 20, 3);
  EXPECT_GT(r.median_gbps, 0.1);
  EXPECT_GE(r.best_gbps, r.median_gbps);
  EXPECT_EQ(r.bytes, size_t{16} << 20);
  EXPECT_EQ(r.threads, 2);
  EXPECT_LE(r.huge_page_bytes, r.bytes);
}

}  // namespace
}  // namespace st
