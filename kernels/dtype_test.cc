#include "kernels/dtype.h"

#include "gtest/gtest.h"

namespace st {
namespace {

TEST(DTypeTest, GgmlNames) {
  EXPECT_EQ(GgmlTypeName(0), "F32");
  EXPECT_EQ(GgmlTypeName(2), "Q4_0");
  EXPECT_EQ(GgmlTypeName(8), "Q8_0");
  EXPECT_EQ(GgmlTypeName(12), "Q4_K");
  EXPECT_EQ(GgmlTypeName(14), "Q6_K");
  EXPECT_EQ(GgmlTypeName(16), "IQ2_XXS");
  EXPECT_EQ(GgmlTypeName(22), "IQ2_S");
  EXPECT_EQ(GgmlTypeName(23), "IQ4_XS");
  EXPECT_EQ(GgmlTypeName(29), "IQ1_M");
  EXPECT_EQ(GgmlTypeName(30), "BF16");
  EXPECT_EQ(GgmlTypeName(35), "TQ2_0");
  EXPECT_EQ(GgmlTypeName(39), "MXFP4");
  EXPECT_EQ(GgmlTypeName(45), "type45");
  EXPECT_EQ(GgmlTypeName(255), "type255");
  EXPECT_EQ(GgmlTypeName(1u << 30), "type<unknown>");
}

TEST(DTypeTest, FromGgml) {
  EXPECT_EQ(*DTypeFromGgml(0), DType::kF32);
  EXPECT_EQ(*DTypeFromGgml(1), DType::kF16);
  EXPECT_EQ(*DTypeFromGgml(2), DType::kQ4_0);
  EXPECT_EQ(*DTypeFromGgml(8), DType::kQ8_0);
  EXPECT_EQ(*DTypeFromGgml(30), DType::kBF16);
  const auto k = DTypeFromGgml(12);
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(k.status().message().find("Q4_K"), absl::string_view::npos) << k.status();
}

TEST(DTypeTest, NamesAndSizes) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    EXPECT_EQ(*ParseDType(DTypeName(t)), t);
    EXPECT_EQ(GgmlTypeName(static_cast<uint32_t>(t)), DTypeName(t));
  }
  EXPECT_EQ(*ParseDType("q4_0"), DType::kQ4_0);
  EXPECT_EQ(*ParseDType("bf16"), DType::kBF16);
  EXPECT_FALSE(ParseDType("q4_k").ok());
  EXPECT_EQ(RowBytes(DType::kF32, 3), 12u);
  EXPECT_EQ(RowBytes(DType::kF16, 3), 6u);
  EXPECT_EQ(RowBytes(DType::kBF16, 64), 128u);
  EXPECT_EQ(RowBytes(DType::kQ4_0, 64), 36u);
  EXPECT_EQ(RowBytes(DType::kQ8_0, 64), 68u);
  EXPECT_TRUE(IsBlockQuantized(DType::kQ4_0));
  EXPECT_FALSE(IsBlockQuantized(DType::kBF16));
}

}  // namespace
}  // namespace st
