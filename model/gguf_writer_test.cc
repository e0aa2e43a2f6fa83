// GgufWriter error paths: I/O errors, call-order mistakes, invalid values and
// shapes. (Successful writes are covered by gguf_test.cc round trips.)
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf.h"

namespace st {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string TempPath(const std::string& stem) {
  return ::testing::TempDir() + "/gguf_writer_test_" + std::to_string(::getpid()) + "_" + stem +
         ".gguf";
}

void ExpectError(const absl::Status& s, absl::StatusCode code,
                 std::initializer_list<std::string> needles) {
  EXPECT_EQ(s.code(), code) << s;
  for (const std::string& n : needles) EXPECT_THAT(std::string(s.message()), HasSubstr(n));
}

TEST(GgufWriterErrorTest, FullDiskIsResourceExhaustedNamingThePath) {
  if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "/dev/full not available";
  GgufWriter w;
  w.Set("k", GgufValue::U32(1));
  ASSERT_TRUE(w.AddTensorInfo("t", DType::kF32, {4}).ok());
  absl::Status s = w.Begin("/dev/full");
  ExpectError(s, absl::StatusCode::kResourceExhausted, {"/dev/full", "write"});
  // Sticky: later calls report the same error.
  const float x[4] = {};
  ExpectError(w.WriteTensorData("t", x, sizeof(x)), absl::StatusCode::kResourceExhausted,
              {"/dev/full"});
  ExpectError(w.Finish(), absl::StatusCode::kResourceExhausted, {"/dev/full"});
}

TEST(GgufWriterErrorTest, UnopenablePath) {
  GgufWriter w;
  ExpectError(w.Begin("/nonexistent/dir/out.gguf"), absl::StatusCode::kNotFound,
              {"/nonexistent/dir/out.gguf"});
}

TEST(GgufWriterErrorTest, CallOrder) {
  GgufWriter w;
  ASSERT_TRUE(w.AddTensorInfo("a", DType::kF32, {2}).ok());
  ASSERT_TRUE(w.AddTensorInfo("b", DType::kF16, {2}).ok());
  const char bytes[8] = {};
  ExpectError(w.WriteTensorData("a", bytes, 8), absl::StatusCode::kFailedPrecondition, {"Begin"});
  ExpectError(w.Finish(), absl::StatusCode::kFailedPrecondition, {"without Begin"});
  const std::string path = TempPath("order");
  ASSERT_TRUE(w.Begin(path).ok());
  ExpectError(w.Begin(path), absl::StatusCode::kFailedPrecondition, {"twice"});
  ExpectError(w.AddTensorInfo("c", DType::kF32, {1}), absl::StatusCode::kFailedPrecondition,
              {"'c'", "after Begin"});
  ExpectError(w.WriteTensorData("b", bytes, 4), absl::StatusCode::kInvalidArgument,
              {"'b'", "out of order", "expected 'a'"});
  ExpectError(w.WriteTensorData("a", bytes, 7), absl::StatusCode::kInvalidArgument,
              {"'a'", "8 bytes, got 7"});
  ASSERT_TRUE(w.WriteTensorData("a", bytes, 8).ok());  // mistakes above wrote nothing
  ExpectError(w.Finish(), absl::StatusCode::kFailedPrecondition,
              {path, "only 1 of 2 tensors", "first missing 'b'"});
  ExpectError(w.Finish(), absl::StatusCode::kFailedPrecondition, {"twice"});
  EXPECT_FALSE(GgufFile::Open(path).ok());  // incomplete file is rejected
  std::remove(path.c_str());
}

TEST(GgufWriterErrorTest, TooManyTensorsWritten) {
  GgufWriter w;
  ASSERT_TRUE(w.AddTensorInfo("a", DType::kF32, {1}).ok());
  const std::string path = TempPath("extra");
  ASSERT_TRUE(w.Begin(path).ok());
  const float x = 1;
  ASSERT_TRUE(w.WriteTensorData("a", &x, 4).ok());
  ExpectError(w.WriteTensorData("z", &x, 4), absl::StatusCode::kFailedPrecondition,
              {"'z'", "after all 1"});
  EXPECT_TRUE(w.Finish().ok());
  std::remove(path.c_str());
}

TEST(GgufWriterErrorTest, SetAfterBeginFailsFinish) {
  GgufWriter w;
  const std::string path = TempPath("late_set");
  ASSERT_TRUE(w.Begin(path).ok());
  w.Set("late", GgufValue::U32(1));
  ExpectError(w.Finish(), absl::StatusCode::kFailedPrecondition, {"'late'", "after Begin"});
  std::remove(path.c_str());
}

TEST(GgufWriterErrorTest, DestroyedBeforeFinishLeavesRejectedFile) {
  const std::string path = TempPath("abandoned");
  {
    GgufWriter w;
    ASSERT_TRUE(w.AddTensorInfo("a", DType::kF32, {64}).ok());
    ASSERT_TRUE(w.Begin(path).ok());
  }
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  ExpectError(f.status(), absl::StatusCode::kInvalidArgument, {"truncated"});
  std::remove(path.c_str());
}

TEST(GgufWriterErrorTest, BadTensorDeclarations) {
  GgufWriter w;
  ASSERT_TRUE(w.AddTensorInfo("a", DType::kF32, {2}).ok());
  ExpectError(w.AddTensorInfo("a", DType::kF32, {2}), absl::StatusCode::kInvalidArgument,
              {"duplicate tensor name 'a'"});
  ExpectError(w.AddTensorInfo("b", DType::kF32, {}), absl::StatusCode::kInvalidArgument,
              {"'b'", "n_dims 0"});
  ExpectError(w.AddTensorInfo("b", DType::kF32, {1, 1, 1, 1, 1}),
              absl::StatusCode::kInvalidArgument, {"'b'", "n_dims 5"});
  ExpectError(w.AddTensorInfo("b", DType::kF32, {3, 0}), absl::StatusCode::kInvalidArgument,
              {"'b'", "ne[1] = 0"});
  ExpectError(w.AddTensorInfo("b", DType::kQ4_0, {31}), absl::StatusCode::kInvalidArgument,
              {"'b'", "Q4_0", "block size 32"});
  ExpectError(w.AddTensorInfo("b", static_cast<DType>(12), {32}),
              absl::StatusCode::kInvalidArgument, {"'b'", "invalid DType 12"});
}

// Begin() (and BuildInMemory) validate each value against its declared type.
void ExpectBadValue(const std::string& key, GgufValue v, const std::string& needle) {
  SCOPED_TRACE(key);
  ExpectError(GgufWriter::BuildInMemory({{key, v}}, {}, {}).status(),
              absl::StatusCode::kInvalidArgument, {"metadata key '" + key + "'", needle});
  GgufWriter w;
  w.Set(key, std::move(v));
  const std::string path = TempPath("bad_value");
  ExpectError(w.Begin(path), absl::StatusCode::kInvalidArgument,
              {"metadata key '" + key + "'", needle});
  EXPECT_NE(::access(path.c_str(), F_OK), 0) << "nothing is created before validation";
}

GgufArray Ints(GgufType t, std::vector<int64_t> v) {
  GgufArray a;
  a.elem_type = t;
  a.ints = std::move(v);
  return a;
}

TEST(GgufWriterErrorTest, InvalidValues) {
  ExpectBadValue("wrong_alt", GgufValue{GgufType::kUint32, std::string("x")}, "alternative");
  ExpectBadValue("u8_range", GgufValue{GgufType::kUint8, uint64_t{300}}, "out of range for uint8");
  ExpectBadValue("i16_range", GgufValue{GgufType::kInt16, int64_t{-40000}}, "out of range");
  ExpectBadValue("u32_neg", GgufValue{GgufType::kUint32, int64_t{-1}}, "out of range");
  ExpectBadValue("f32_range", GgufValue{GgufType::kFloat32, 1e300}, "out of float32 range");
  ExpectBadValue("unknown", GgufValue{static_cast<GgufType>(99), uint64_t{1}},
                 "unknown value type 99");
  ExpectBadValue("arr_i8", GgufValue::Arr(Ints(GgufType::kInt8, {1, 200})),
                 "element 1 = 200 out of range for int8");
  ExpectBadValue("arr_bool", GgufValue::Arr(Ints(GgufType::kBool, {0, 2})), "element 1 = 2");
  ExpectBadValue("arr_u64_neg", GgufValue::Arr(Ints(GgufType::kUint64, {-1})), "out of range");
  GgufArray mixed = Ints(GgufType::kUint64, {1});
  mixed.uints = {2};
  ExpectBadValue("arr_mixed", GgufValue::Arr(mixed), "do not match");
  GgufArray wrong = Ints(GgufType::kString, {1});
  ExpectBadValue("arr_wrong", GgufValue::Arr(wrong), "do not match");
  ExpectBadValue("arr_unknown", GgufValue::Arr(Ints(static_cast<GgufType>(42), {})),
                 "unknown array element type 42");
  GgufArray deep = Ints(GgufType::kInt32, {1});
  for (int i = 0; i < kGgufMaxArrayDepth; ++i) {
    GgufArray outer;
    outer.elem_type = GgufType::kArray;
    outer.arrays = {deep};
    deep = outer;
  }
  ExpectBadValue("deep", GgufValue::Arr(deep), "nested deeper than 8");
}

TEST(GgufWriterErrorTest, BadAlignmentValues) {
  for (GgufValue v : {GgufValue::U32(0), GgufValue::U32(48), GgufValue::U64(64), GgufValue::I32(64),
                      GgufValue::Str("64")}) {
    GgufWriter w;
    w.Set("general.alignment", v);
    ExpectError(w.Begin(TempPath("bad_align")), absl::StatusCode::kInvalidArgument,
                {"general.alignment", "power of two"});
    ExpectError(GgufWriter::BuildInMemory({{"general.alignment", v}}, {}, {}).status(),
                absl::StatusCode::kInvalidArgument, {"general.alignment"});
  }
}

TEST(GgufWriterErrorTest, BuildInMemoryArgumentChecks) {
  const std::vector<GgufTensorInfo> one = {{.name = "t", .ne = {4}, .type = DType::kF32}};
  ExpectError(GgufWriter::BuildInMemory({}, one, {}).status(), absl::StatusCode::kInvalidArgument,
              {"1 tensors but 0 data buffers"});
  ExpectError(GgufWriter::BuildInMemory({}, one, {std::string(15, 'x')}).status(),
              absl::StatusCode::kInvalidArgument, {"'t'", "16 bytes, got 15"});
  ExpectError(GgufWriter::BuildInMemory({}, {}, {}, 1).status(), absl::StatusCode::kInvalidArgument,
              {"version 1"});
  ExpectError(GgufWriter::BuildInMemory({{"k", GgufValue::U8(1)}, {"k", GgufValue::U8(2)}}, {}, {})
                  .status(),
              absl::StatusCode::kInvalidArgument, {"duplicate metadata key 'k'"});
  ExpectError(GgufWriter::BuildInMemory({}, {one[0], one[0]}, {"", ""}).status(),
              absl::StatusCode::kInvalidArgument, {"duplicate tensor name 't'"});
}

}  // namespace
}  // namespace st
