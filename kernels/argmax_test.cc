// st::Argmax (every SIMD target) equals scalar::Argmax exactly: random
// vocabularies of odd sizes, ties, the maximum in the scalar tail, NaNs
// (anywhere, and at index 0), infinities and all -inf.
#include "kernels/argmax.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/test_util.h"

namespace st {
namespace {

using ::st::testing::ForEachTarget;
using ::st::testing::Gaussian;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

void ExpectTwin(const std::vector<float>& x, int64_t expected) {
  ASSERT_EQ(scalar::Argmax(x.data(), x.size()), expected);
  ForEachTarget([&] { EXPECT_EQ(Argmax(x.data(), x.size()), expected) << "n " << x.size(); });
}

TEST(ArgmaxTest, RandomVocabulariesOfOddSizes) {
  for (size_t n : {1, 2, 15, 16, 17, 63, 64, 65, 1000, 151936}) {
    const std::vector<float> x = Gaussian(n, static_cast<uint32_t>(n));
    ExpectTwin(x, scalar::Argmax(x.data(), n));
  }
}

TEST(ArgmaxTest, TiesGoToTheLowestIndex) {
  std::vector<float> x = Gaussian(1001, 3);
  x[700] = 9.0f;
  x[333] = 9.0f;
  x[999] = 9.0f;
  ExpectTwin(x, 333);
}

TEST(ArgmaxTest, MaximumInTheTailAndAtTheEnds) {
  std::vector<float> x = Gaussian(1003, 4);
  x[1002] = 50.0f;
  ExpectTwin(x, 1002);
  x[0] = 60.0f;
  ExpectTwin(x, 0);
}

TEST(ArgmaxTest, NaNsNeverWinUnlessFirst) {
  std::vector<float> x = Gaussian(517, 5);
  x[10] = kNaN;
  x[200] = 7.0f;
  x[300] = kNaN;
  ExpectTwin(x, 200);
  x[0] = kNaN;  // nothing compares greater than x[0]
  ExpectTwin(x, 0);
  std::vector<float> nans(100, kNaN);
  nans[0] = -1.0f;
  ExpectTwin(nans, 0);
  nans[77] = 2.0f;
  ExpectTwin(nans, 77);
}

TEST(ArgmaxTest, Infinities) {
  std::vector<float> all_neg(129, -kInf);
  ExpectTwin(all_neg, 0);
  std::vector<float> x = Gaussian(129, 6);
  x[64] = kInf;
  x[100] = kInf;
  ExpectTwin(x, 64);
}

}  // namespace
}  // namespace st
