// Typed getters: width conversions with range checks, float widths, arrays,
// NOT_FOUND / INVALID_ARGUMENT with the key, wanted and actual type named.
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf.h"

namespace st {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

GgufArray Ints(GgufType t, std::vector<int64_t> v) {
  GgufArray a;
  a.elem_type = t;
  a.ints = std::move(v);
  return a;
}

class GgufGettersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GgufArray u64s;
    u64s.elem_type = GgufType::kUint64;
    u64s.uints = {1, 2, 3};
    GgufArray u64_big = u64s;
    u64_big.uints.push_back(uint64_t{1} << 31);
    GgufArray strs;
    strs.elem_type = GgufType::kString;
    strs.strings = {"a", "", "c"};
    GgufArray floats;
    floats.elem_type = GgufType::kFloat32;
    floats.floats = {1.0};
    const std::vector<std::pair<std::string, GgufValue>> md = {
        {"u8", GgufValue::U8(200)},
        {"u16", GgufValue::U16(60000)},
        {"u32", GgufValue::U32(4000000000u)},
        {"i32", GgufValue::I32(12345)},
        {"i32_neg", GgufValue::I32(-1)},
        {"u64_small", GgufValue::U64(77)},
        {"u64_big", GgufValue::U64(uint64_t{1} << 40)},
        {"u64_max", GgufValue::U64(std::numeric_limits<uint64_t>::max())},
        {"i64_neg", GgufValue::I64(-5)},
        {"f32", GgufValue::F32(1e-6f)},
        {"f64", GgufValue::F64(1500000.0)},
        {"f64_huge", GgufValue::F64(1e300)},
        {"bool", GgufValue::Bool(true)},
        {"str", GgufValue::Str("smallthinker")},
        {"a.str", GgufValue::Arr(strs)},
        {"a.i32", GgufValue::Arr(Ints(GgufType::kInt32, {1, -3, 151643}))},
        {"a.u8", GgufValue::Arr(Ints(GgufType::kUint8, {0, 255}))},
        {"a.i64_ok", GgufValue::Arr(Ints(GgufType::kInt64, {-2147483648LL, 2147483647}))},
        {"a.i64_big", GgufValue::Arr(Ints(GgufType::kInt64, {2147483648LL}))},
        {"a.u32_big", GgufValue::Arr(Ints(GgufType::kUint32, {2147483648LL}))},
        {"a.u64", GgufValue::Arr(u64s)},
        {"a.u64_big", GgufValue::Arr(u64_big)},
        {"a.bool", GgufValue::Arr(Ints(GgufType::kBool, {1}))},
        {"a.f32", GgufValue::Arr(floats)},
        {"a.empty_i32", GgufValue::Arr(Ints(GgufType::kInt32, {}))},
    };
    absl::StatusOr<std::string> bytes = GgufWriter::BuildInMemory(md, {}, {});
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBuffer(*bytes);
    ASSERT_TRUE(f.ok()) << f.status();
    file_ = *std::move(f);
  }

  template <typename T>
  static void ExpectTypeError(const absl::StatusOr<T>& r, const std::string& key,
                              const std::string& wanted, const std::string& found) {
    ASSERT_FALSE(r.ok()) << key;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_THAT(std::string(r.status().message()),
                AllOf(HasSubstr("<memory>"), HasSubstr("'" + key + "'"), HasSubstr(wanted),
                      HasSubstr(found)));
  }

  std::unique_ptr<GgufFile> file_;
};

TEST_F(GgufGettersTest, Uint32ConvertsInRangeIntegers) {
  EXPECT_EQ(*file_->GetUint32("u8"), 200u);
  EXPECT_EQ(*file_->GetUint32("u16"), 60000u);
  EXPECT_EQ(*file_->GetUint32("u32"), 4000000000u);
  EXPECT_EQ(*file_->GetUint32("i32"), 12345u);
  EXPECT_EQ(*file_->GetUint32("u64_small"), 77u);
  ExpectTypeError(file_->GetUint32("i32_neg"), "i32_neg", "wanted uint32",
                  "found int32 with a value out of range");
  ExpectTypeError(file_->GetUint32("u64_big"), "u64_big", "wanted uint32",
                  "found uint64 with a value out of range");
  ExpectTypeError(file_->GetUint32("str"), "str", "uint32", "found string");
  ExpectTypeError(file_->GetUint32("f32"), "f32", "uint32", "found float32");
  ExpectTypeError(file_->GetUint32("bool"), "bool", "uint32", "found bool");
}

TEST_F(GgufGettersTest, Uint64) {
  EXPECT_EQ(*file_->GetUint64("u64_max"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(*file_->GetUint64("u8"), 200u);
  EXPECT_EQ(*file_->GetUint64("i32"), 12345u);
  ExpectTypeError(file_->GetUint64("i64_neg"), "i64_neg", "uint64",
                  "found int64 with a value out of range");
  ExpectTypeError(file_->GetUint64("a.u64"), "a.u64", "uint64", "array of uint64");
}

TEST_F(GgufGettersTest, Float32AcceptsBothWidths) {
  EXPECT_EQ(*file_->GetFloat32("f32"), 1e-6f);
  EXPECT_EQ(*file_->GetFloat32("f64"), 1500000.0f);
  ExpectTypeError(file_->GetFloat32("f64_huge"), "f64_huge", "wanted float32",
                  "found float64 with a value out of range");
  ExpectTypeError(file_->GetFloat32("u32"), "u32", "wanted float32", "found uint32");
}

TEST_F(GgufGettersTest, BoolAndString) {
  EXPECT_TRUE(*file_->GetBool("bool"));
  EXPECT_EQ(*file_->GetString("str"), "smallthinker");
  ExpectTypeError(file_->GetBool("u8"), "u8", "bool", "uint8");
  ExpectTypeError(file_->GetString("a.str"), "a.str", "string", "array of string");
}

TEST_F(GgufGettersTest, StringArray) {
  EXPECT_THAT(*file_->GetStringArray("a.str"), ElementsAre("a", "", "c"));
  ExpectTypeError(file_->GetStringArray("a.i32"), "a.i32", "array of string", "array of int32");
  ExpectTypeError(file_->GetStringArray("str"), "str", "array of string", "found string");
}

TEST_F(GgufGettersTest, Int32ArrayAcceptsInRangeIntegerArrays) {
  EXPECT_THAT(*file_->GetInt32Array("a.i32"), ElementsAre(1, -3, 151643));
  EXPECT_THAT(*file_->GetInt32Array("a.u8"), ElementsAre(0, 255));
  EXPECT_THAT(*file_->GetInt32Array("a.i64_ok"), ElementsAre(std::numeric_limits<int32_t>::min(),
                                                             std::numeric_limits<int32_t>::max()));
  EXPECT_THAT(*file_->GetInt32Array("a.u64"), ElementsAre(1, 2, 3));
  EXPECT_TRUE(file_->GetInt32Array("a.empty_i32")->empty());
  ExpectTypeError(file_->GetInt32Array("a.i64_big"), "a.i64_big", "int32",
                  "array of int64 with a value out of range");
  ExpectTypeError(file_->GetInt32Array("a.u32_big"), "a.u32_big", "int32",
                  "array of uint32 with a value out of range");
  ExpectTypeError(file_->GetInt32Array("a.u64_big"), "a.u64_big", "int32",
                  "array of uint64 with a value out of range");
  ExpectTypeError(file_->GetInt32Array("a.bool"), "a.bool", "int32", "array of bool");
  ExpectTypeError(file_->GetInt32Array("a.f32"), "a.f32", "int32", "array of float32");
  ExpectTypeError(file_->GetInt32Array("a.str"), "a.str", "int32", "array of string");
  ExpectTypeError(file_->GetInt32Array("i32"), "i32", "int32", "found int32");
}

TEST_F(GgufGettersTest, MissingKeyIsNotFoundNamingTheKey) {
  for (const auto& r : {file_->GetUint32("nope").status(), file_->GetUint64("nope").status(),
                        file_->GetFloat32("nope").status(), file_->GetBool("nope").status(),
                        file_->GetString("nope").status(), file_->GetStringArray("nope").status(),
                        file_->GetInt32Array("nope").status()}) {
    EXPECT_EQ(r.code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(std::string(r.message()), AllOf(HasSubstr("'nope'"), HasSubstr("not found")));
  }
}

}  // namespace
}  // namespace st
