// Writer -> reader round trips (every metadata type, every tensor type, v2 and
// v3, on disk and in memory) and the typed getters.
#include "model/gguf.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace st {
namespace {

using ::testing::HasSubstr;
using Metadata = std::vector<std::pair<std::string, GgufValue>>;

std::string TempPath(const std::string& stem) {
  return ::testing::TempDir() + "/gguf_test_" + std::to_string(::getpid()) + "_" + stem + ".gguf";
}

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFileBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

GgufArray Ints(GgufType t, std::vector<int64_t> v) {
  GgufArray a;
  a.elem_type = t;
  a.ints = std::move(v);
  return a;
}

GgufArray Floats(GgufType t, std::vector<double> v) {
  GgufArray a;
  a.elem_type = t;
  a.floats = std::move(v);
  return a;
}

GgufArray Strings(std::vector<std::string> v) {
  GgufArray a;
  a.elem_type = GgufType::kString;
  a.strings = std::move(v);
  return a;
}

GgufArray Arrays(std::vector<GgufArray> v) {
  GgufArray a;
  a.elem_type = GgufType::kArray;
  a.arrays = std::move(v);
  return a;
}

// A canonical text form of a value, so that comparisons print useful diffs.
std::string Dump(const GgufArray& a);
std::string Dump(const GgufValue& v) {
  std::ostringstream os;
  os << GgufTypeName(v.type) << ":";
  if (const auto* x = std::get_if<int64_t>(&v.v)) os << "i" << *x;
  if (const auto* x = std::get_if<uint64_t>(&v.v)) os << "u" << *x;
  if (const auto* x = std::get_if<double>(&v.v)) os.precision(17), os << "f" << *x;
  if (const auto* x = std::get_if<bool>(&v.v)) os << "b" << *x;
  if (const auto* x = std::get_if<std::string>(&v.v)) os << "s" << x->size() << "'" << *x << "'";
  if (const auto* x = std::get_if<GgufArray>(&v.v)) os << Dump(*x);
  return os.str();
}
std::string Dump(const GgufArray& a) {
  std::ostringstream os;
  os.precision(17);
  os << "[" << GgufTypeName(a.elem_type) << " n=" << a.size() << ":";
  for (int64_t x : a.ints) os << " i" << x;
  for (uint64_t x : a.uints) os << " u" << x;
  for (double x : a.floats) os << " f" << x;
  for (const std::string& x : a.strings) os << " s" << x.size() << "'" << x << "'";
  for (const GgufArray& x : a.arrays) os << " " << Dump(x);
  os << "]";
  return os.str();
}

// One key per scalar type (with extreme values), one array per element type,
// nested arrays, empty strings and arrays, UTF-8 keys and values.
Metadata AllTypesMetadata() {
  GgufArray u64s;
  u64s.elem_type = GgufType::kUint64;
  u64s.uints = {0, 1, std::numeric_limits<uint64_t>::max(), uint64_t{1} << 63};
  return {
      {"general.architecture", GgufValue::Str("smallthinker")},
      {"t.u8", GgufValue::U8(255)},
      {"t.i8", GgufValue::I8(-128)},
      {"t.u16", GgufValue::U16(65535)},
      {"t.i16", GgufValue::I16(-32768)},
      {"t.u32", GgufValue::U32(4294967295u)},
      {"t.i32", GgufValue::I32(std::numeric_limits<int32_t>::min())},
      {"t.u64", GgufValue::U64(std::numeric_limits<uint64_t>::max())},
      {"t.i64", GgufValue::I64(std::numeric_limits<int64_t>::min())},
      {"t.i64_neg1", GgufValue::I64(-1)},
      {"t.f32", GgufValue::F32(-1.5e-3f)},
      {"t.f32_max", GgufValue::F32(std::numeric_limits<float>::max())},
      {"t.f32_inf", GgufValue::F32(-std::numeric_limits<float>::infinity())},
      {"t.f64", GgufValue::F64(3.141592653589793)},
      {"t.f64_tiny", GgufValue::F64(std::numeric_limits<double>::denorm_min())},
      {"t.bool_true", GgufValue::Bool(true)},
      {"t.bool_false", GgufValue::Bool(false)},
      {"t.str", GgufValue::Str("hello")},
      {"t.str_empty", GgufValue::Str("")},
      {"t.str_nul", GgufValue::Str(std::string("a\0b", 3))},
      {"t.str_utf8", GgufValue::Str("h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x9A\x80")},
      {"\xD0\xBA\xD0\xBB\xD1\x8E\xD1\x87.\xE6\x97\xA5\xE6\x9C\xAC", GgufValue::U32(7)},
      {"a.u8", GgufValue::Arr(Ints(GgufType::kUint8, {0, 1, 255}))},
      {"a.i8", GgufValue::Arr(Ints(GgufType::kInt8, {-128, 0, 127}))},
      {"a.u16", GgufValue::Arr(Ints(GgufType::kUint16, {0, 65535}))},
      {"a.i16", GgufValue::Arr(Ints(GgufType::kInt16, {-32768, 32767}))},
      {"a.u32", GgufValue::Arr(Ints(GgufType::kUint32, {0, 4294967295}))},
      {"a.i32", GgufValue::Arr(Ints(GgufType::kInt32, {-2147483648LL, -1, 2147483647}))},
      {"a.u64", GgufValue::Arr(u64s)},
      {"a.i64", GgufValue::Arr(Ints(GgufType::kInt64, {std::numeric_limits<int64_t>::min(), -7,
                                                       std::numeric_limits<int64_t>::max()}))},
      {"a.f32",
       GgufValue::Arr(Floats(GgufType::kFloat32, {0.5, -2.25, double{1e-30f}, double{3e38f}}))},
      {"a.f64", GgufValue::Arr(Floats(GgufType::kFloat64, {1e300, -0.1, 0.0}))},
      {"a.bool", GgufValue::Arr(Ints(GgufType::kBool, {1, 0, 1}))},
      {"a.str", GgufValue::Arr(Strings({"", "a b", "\xE6\x97\xA5\xE6\x9C\xAC", "Ġhello"}))},
      {"a.empty_i32", GgufValue::Arr(Ints(GgufType::kInt32, {}))},
      {"a.empty_str", GgufValue::Arr(Strings({}))},
      {"a.nested",
       GgufValue::Arr(Arrays({Ints(GgufType::kInt32, {1, 2}), Ints(GgufType::kInt32, {}),
                              Strings({"x"}), Arrays({Floats(GgufType::kFloat64, {1.5})})}))},
  };
}

struct TensorCase {
  GgufTensorInfo info;
  std::string data;
};

// One tensor per supported type, with deterministic pseudo-random bytes.
std::vector<TensorCase> AllTypesTensors() {
  std::vector<TensorCase> cases = {
      {{.name = "t.f32", .ne = {4, 3}, .type = DType::kF32}, {}},
      {{.name = "t.f16", .ne = {7}, .type = DType::kF16}, {}},  // 14 bytes: exercises padding
      {{.name = "t.bf16", .ne = {2, 2, 2}, .type = DType::kBF16}, {}},
      {{.name = "t.q8_0", .ne = {64, 2}, .type = DType::kQ8_0}, {}},
      {{.name = "t.q4_0", .ne = {32, 1, 1, 3}, .type = DType::kQ4_0}, {}},
  };
  std::mt19937 rng(42);
  for (TensorCase& c : cases) {
    const uint64_t n = *GgufTensorBytes(c.info.type, c.info.ne);
    for (uint64_t i = 0; i < n; ++i) c.data.push_back(static_cast<char>(rng() & 0xff));
  }
  return cases;
}

void ExpectMatches(const GgufFile& f, const Metadata& md, const std::vector<TensorCase>& tensors,
                   uint32_t version, uint64_t alignment) {
  EXPECT_EQ(f.version(), version);
  EXPECT_EQ(f.alignment(), alignment);
  EXPECT_EQ(f.data_offset() % alignment, 0u);
  EXPECT_LE(f.data_offset(), f.file_size());
  ASSERT_EQ(f.metadata().size(), md.size());
  for (size_t i = 0; i < md.size(); ++i) {
    EXPECT_EQ(f.metadata()[i].first, md[i].first);
    EXPECT_EQ(Dump(f.metadata()[i].second), Dump(md[i].second)) << md[i].first;
    ASSERT_NE(f.Find(md[i].first), nullptr) << md[i].first;
    EXPECT_EQ(f.Find(md[i].first), &f.metadata()[i].second);
    EXPECT_TRUE(f.Has(md[i].first));
  }
  EXPECT_FALSE(f.Has("no.such.key"));
  ASSERT_EQ(f.tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GgufTensorInfo& t = f.tensors()[i];
    const GgufTensorInfo& want = tensors[i].info;
    EXPECT_EQ(t.name, want.name);
    EXPECT_EQ(t.type, want.type) << t.name;
    EXPECT_EQ(t.ne, want.ne) << t.name;
    EXPECT_EQ(t.n_bytes, tensors[i].data.size()) << t.name;
    EXPECT_EQ(t.offset % alignment, 0u) << t.name;
    EXPECT_EQ(f.FindTensor(want.name), &t);
    EXPECT_EQ((f.data_offset() + t.offset) % alignment, 0u);
    const std::string got(reinterpret_cast<const char*>(f.TensorData(t)), t.n_bytes);
    EXPECT_EQ(got, tensors[i].data) << t.name;
  }
  EXPECT_EQ(f.FindTensor("no.such.tensor"), nullptr);
}

absl::StatusOr<std::string> Build(const Metadata& md, const std::vector<TensorCase>& tensors,
                                  uint32_t version) {
  std::vector<GgufTensorInfo> infos;
  std::vector<std::string> data;
  for (const TensorCase& c : tensors) {
    infos.push_back(c.info);
    data.push_back(c.data);
  }
  return GgufWriter::BuildInMemory(md, infos, data, version);
}

absl::Status Stream(const std::string& path, const Metadata& md,
                    const std::vector<TensorCase>& tensors) {
  GgufWriter w;
  for (const auto& [k, v] : md) w.Set(k, v);
  for (const TensorCase& c : tensors) {
    absl::Status s = w.AddTensorInfo(c.info.name, c.info.type, c.info.ne);
    if (!s.ok()) return s;
  }
  if (absl::Status s = w.Begin(path); !s.ok()) return s;
  for (const TensorCase& c : tensors) {
    absl::Status s = w.WriteTensorData(c.info.name, c.data.data(), c.data.size());
    if (!s.ok()) return s;
  }
  return w.Finish();
}

class GgufRoundTripTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(GgufRoundTripTest, InMemory) {
  const Metadata md = AllTypesMetadata();
  const auto tensors = AllTypesTensors();
  absl::StatusOr<std::string> bytes = Build(md, tensors, GetParam());
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBuffer(*bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->path(), "<memory>");
  EXPECT_EQ((*f)->file_size(), bytes->size());
  ExpectMatches(**f, md, tensors, GetParam(), 32);
}

TEST_P(GgufRoundTripTest, OnDiskViaOpen) {
  const Metadata md = AllTypesMetadata();
  const auto tensors = AllTypesTensors();
  absl::StatusOr<std::string> bytes = Build(md, tensors, GetParam());
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  const std::string path = TempPath("disk_v" + std::to_string(GetParam()));
  WriteFileBytes(path, *bytes);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->path(), path);
  ExpectMatches(**f, md, tensors, GetParam(), 32);
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(Versions, GgufRoundTripTest, ::testing::Values(2u, 3u),
                         [](const auto& info) { return "V" + std::to_string(info.param); });

TEST(GgufWriterTest, StreamingWriterMatchesInMemoryBuildAndReadsBack) {
  const Metadata md = AllTypesMetadata();
  const auto tensors = AllTypesTensors();
  const std::string path = TempPath("stream");
  ASSERT_TRUE(Stream(path, md, tensors).ok());
  absl::StatusOr<std::string> expected = Build(md, tensors, 3);
  ASSERT_TRUE(expected.ok()) << expected.status();
  EXPECT_EQ(ReadFileBytes(path), *expected);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ExpectMatches(**f, md, tensors, 3, 32);
  std::remove(path.c_str());
}

TEST(GgufWriterTest, CustomAlignments) {
  for (uint32_t alignment : {1u, 8u, 64u, 4096u}) {
    Metadata md = {{"general.alignment", GgufValue::U32(alignment)}, {"x", GgufValue::I8(1)}};
    const auto tensors = AllTypesTensors();
    const std::string path = TempPath("align" + std::to_string(alignment));
    ASSERT_TRUE(Stream(path, md, tensors).ok()) << alignment;
    absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
    ASSERT_TRUE(f.ok()) << f.status();
    ExpectMatches(**f, md, tensors, 3, alignment);
    EXPECT_EQ((*f)->file_size() % alignment, 0u);
    std::remove(path.c_str());
  }
}

TEST(GgufWriterTest, SetReplacesExistingKeyInPlace) {
  GgufWriter w;
  w.Set("a", GgufValue::U32(1));
  w.Set("b", GgufValue::U32(2));
  w.Set("a", GgufValue::Str("again"));
  const std::string path = TempPath("replace");
  ASSERT_TRUE(w.Begin(path).ok());
  ASSERT_TRUE(w.Finish().ok());
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ((*f)->metadata().size(), 2u);
  EXPECT_EQ((*f)->metadata()[0].first, "a");
  EXPECT_EQ(*(*f)->GetString("a"), "again");
  EXPECT_TRUE((*f)->tensors().empty());
  EXPECT_EQ((*f)->data_offset(), (*f)->file_size());
  std::remove(path.c_str());
}

TEST(GgufWriterTest, Uint64ArrayGivenAsNonNegativeInts) {
  GgufArray a = Ints(GgufType::kUint64, {0, 5, std::numeric_limits<int64_t>::max()});
  absl::StatusOr<std::string> bytes = GgufWriter::BuildInMemory({{"u", GgufValue::Arr(a)}}, {}, {});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBuffer(*bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  const auto& got = std::get<GgufArray>((*f)->Find("u")->v);
  EXPECT_TRUE(got.ints.empty());
  EXPECT_THAT(got.uints, ::testing::ElementsAre(0u, 5u, uint64_t{INT64_MAX}));
  EXPECT_EQ(got.size(), 3u);
}

TEST(GgufTensorBytesTest, SizesPerType) {
  EXPECT_EQ(*GgufTensorBytes(DType::kF32, {3, 5}), 60u);
  EXPECT_EQ(*GgufTensorBytes(DType::kF16, {3, 5}), 30u);
  EXPECT_EQ(*GgufTensorBytes(DType::kBF16, {1}), 2u);
  EXPECT_EQ(*GgufTensorBytes(DType::kQ8_0, {64, 3}), 2u * 34 * 3);
  EXPECT_EQ(*GgufTensorBytes(DType::kQ4_0, {1536, 768, 32}), 1536u / 32 * 18 * 768 * 32);
  EXPECT_FALSE(GgufTensorBytes(DType::kQ4_0, {16}).ok());
  EXPECT_FALSE(GgufTensorBytes(DType::kF32, {}).ok());
  EXPECT_FALSE(GgufTensorBytes(DType::kF32, {1, 1, 1, 1, 1}).ok());
  EXPECT_FALSE(GgufTensorBytes(DType::kF32, {uint64_t{1} << 62}).ok());  // bytes overflow
  EXPECT_FALSE(GgufTensorBytes(static_cast<DType>(12), {32}).ok());
  GgufTensorInfo t{.ne = {2, 3, 4}};
  EXPECT_EQ(t.n_elements(), 24u);
}

}  // namespace
}  // namespace st
