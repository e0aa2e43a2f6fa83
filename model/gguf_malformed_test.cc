// Malformed GGUF images, hand-assembled byte by byte: each must be
// INVALID_ARGUMENT with a message naming the problem (never a crash).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf.h"

namespace st {
namespace {

using ::testing::HasSubstr;

// Little-endian byte assembler for GGUF images.
class Bytes {
 public:
  template <typename T>
  Bytes& Put(T x) {
    s_.append(reinterpret_cast<const char*>(&x), sizeof(x));
    return *this;
  }
  Bytes& U8(uint8_t x) { return Put(x); }
  Bytes& U32(uint32_t x) { return Put(x); }
  Bytes& U64(uint64_t x) { return Put(x); }
  Bytes& Str(const std::string& x) { return U64(x.size()).Raw(x); }
  Bytes& Raw(const std::string& x) { return s_.append(x), *this; }
  Bytes& PadTo(uint64_t alignment) {
    s_.resize((s_.size() + alignment - 1) / alignment * alignment, '\0');
    return *this;
  }
  Bytes& Zeros(size_t n) { return s_.append(n, '\0'), *this; }
  // magic, version, tensor count, metadata count
  Bytes& Header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return Raw("GGUF").U32(version).U64(n_tensors).U64(n_kv);
  }
  Bytes& KvU32(const std::string& key, uint32_t x) { return Str(key).U32(4).U32(x); }
  Bytes& TensorInfo(const std::string& name, std::initializer_list<uint64_t> ne, uint32_t type,
                    uint64_t offset) {
    Str(name).U32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) U64(d);
    return U32(type).U64(offset);
  }
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

// Expects FromBuffer(bytes) to fail with INVALID_ARGUMENT mentioning each of
// `needles` (and the "<memory>" path).
void ExpectInvalid(const std::string& bytes, std::initializer_list<std::string> needles) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBuffer(bytes);
  ASSERT_FALSE(f.ok()) << "parsed a malformed file";
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
  const std::string msg(f.status().message());
  EXPECT_THAT(msg, HasSubstr("<memory>: "));
  for (const std::string& n : needles) EXPECT_THAT(msg, HasSubstr(n));
}

// A small valid image: 2 keys (string, array), 2 tensors (Q8_0 and F32). The
// last tensor ends on the alignment, so the file has no trailing padding (which
// the reader does not require) and every strict prefix is truncated.
std::string SmallValidFile() {
  GgufArray a;
  a.elem_type = GgufType::kInt32;
  a.ints = {1, 2, 3};
  absl::StatusOr<std::string> bytes = GgufWriter::BuildInMemory(
      {{"general.architecture", GgufValue::Str("smallthinker")}, {"a", GgufValue::Arr(a)}},
      {{.name = "q", .ne = {32}, .type = DType::kQ8_0},
       {.name = "w", .ne = {8}, .type = DType::kF32}},
      {std::string(34, '\2'), std::string(32, '\1')});
  if (!bytes.ok()) ADD_FAILURE() << bytes.status();
  return bytes.value_or("");
}

TEST(GgufMalformedTest, SmallValidFileParses) {
  EXPECT_TRUE(GgufFile::FromBuffer(SmallValidFile()).ok());
}

TEST(GgufMalformedTest, EveryTruncatedPrefixIsAnErrorInMemory) {
  const std::string full = SmallValidFile();
  for (size_t n = 0; n < full.size(); ++n) {
    SCOPED_TRACE(n);
    absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBuffer(full.substr(0, n));
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(f.status().message()),
                ::testing::AnyOf(HasSubstr("truncated"), HasSubstr("empty"), HasSubstr("left")));
  }
}

TEST(GgufMalformedTest, EveryTruncatedPrefixIsAnErrorOnDisk) {
  const std::string full = SmallValidFile();
  const std::string path =
      ::testing::TempDir() + "/gguf_malformed_" + std::to_string(::getpid()) + ".gguf";
  for (size_t n = 0; n <= full.size(); ++n) {
    SCOPED_TRACE(n);
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(full.data(), n);
    absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
    if (n == full.size()) {
      EXPECT_TRUE(f.ok()) << f.status();
      continue;
    }
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(f.status().message()), HasSubstr(path));
  }
  std::remove(path.c_str());
}

TEST(GgufMalformedTest, EmptyAndBadMagic) {
  ExpectInvalid("", {"empty"});
  ExpectInvalid("GGU", {"truncated", "magic"});
  ExpectInvalid(Bytes().Raw("GGML").U32(3).U64(0).U64(0).str(), {"bad magic", "not a GGUF file"});
}

TEST(GgufMalformedTest, UnsupportedVersions) {
  ExpectInvalid(Bytes().Header(0, 0, 1).str(), {"unsupported GGUF version 1 (only 2 and 3)"});
  ExpectInvalid(Bytes().Header(0, 0, 4).str(), {"unsupported GGUF version 4"});
  ExpectInvalid(Bytes().Header(0, 0, 0x03000000).str(), {"big-endian"});
}

TEST(GgufMalformedTest, AbsurdCountsRejectedBeforeAllocating) {
  ExpectInvalid(Bytes().Header(uint64_t{1} << 62, 0).str(),
                {"tensor count 4611686018427387904", "cannot fit"});
  ExpectInvalid(Bytes().Header(0, ~uint64_t{0}).str(),
                {"metadata count 18446744073709551615", "cannot fit"});
  // Both counts individually plausible, together too many for the bytes left.
  ExpectInvalid(Bytes().Header(1, 3).Zeros(13 * 3 + 31).str(), {"cannot fit"});
}

TEST(GgufMalformedTest, AbsurdStringLengths) {
  ExpectInvalid(Bytes().Header(0, 1).U64(uint64_t{1} << 63).Zeros(16).str(),
                {"string length 9223372036854775808", "metadata entry 0"});
  ExpectInvalid(Bytes().Header(0, 1).Str("k").U32(8).U64(~uint64_t{0}).Zeros(8).str(),
                {"metadata key 'k'", "string length 18446744073709551615"});
  ExpectInvalid(Bytes().Header(1, 0).U64(uint64_t{1} << 62).Zeros(40).str(),
                {"tensor info 0", "string length 4611686018427387904"});
}

TEST(GgufMalformedTest, AbsurdArrayLengths) {
  // 2^61 u32 elements, and exactly one string element too many for the bytes left.
  ExpectInvalid(
      Bytes().Header(0, 1).Str("arr").U32(9).U32(4).U64(uint64_t{1} << 61).Zeros(64).str(),
      {"metadata key 'arr'", "array length 2305843009213693952", "uint32"});
  ExpectInvalid(Bytes().Header(0, 1).Str("s").U32(9).U32(8).U64(3).Zeros(8 * 3 - 1).str(),
                {"array length 3 of string"});
  ExpectInvalid(Bytes().Header(0, 1).Str("n").U32(9).U32(9).U64(uint64_t{1} << 60).Zeros(64).str(),
                {"array length 1152921504606846976 of array"});
}

// Arrays whose elements take far more memory decoded than in the file (a
// u8 becomes 8 bytes, an empty nested array a whole GgufArray) are refused
// past kGgufMaxDecodedArrayBytes: a sparse file of them had aborted the
// process on bad_alloc.
TEST(GgufMalformedTest, ArraysThatWouldTakeTooMuchMemoryDecoded) {
  const uint64_t n = (kGgufMaxDecodedArrayBytes / 8) + 1;  // u8: 1 byte in the file
  ExpectInvalid(Bytes().Header(0, 1).Str("u8s").U32(9).U32(0).U64(n).Zeros(n).str(),
                {"metadata key 'u8s'", "MiB in memory"});
  Bytes nested;
  const uint64_t m = kGgufMaxDecodedArrayBytes / sizeof(GgufArray) + 1;
  nested.Header(0, 1).Str("empties").U32(9).U32(9).U64(m);
  for (uint64_t i = 0; i < m; ++i) nested.U32(0).U64(0);  // empty u8 arrays
  ExpectInvalid(nested.str(), {"metadata key 'empties'", "MiB in memory"});
  // Under the limit, as every real file is: parsed.
  const uint64_t ok = 1 << 20;
  EXPECT_TRUE(GgufFile::FromBuffer(Bytes().Header(0, 1).Str("u8s").U32(9).U32(0).U64(ok).Zeros(ok).str()).ok());
}

TEST(GgufMalformedTest, BadMetadataValues) {
  ExpectInvalid(Bytes().Header(0, 1).Str("k").U32(13).U64(0).str(),
                {"metadata key 'k'", "unknown metadata value type 13"});
  ExpectInvalid(Bytes().Header(0, 1).Str("k").U32(9).U32(77).U64(0).str(),
                {"metadata key 'k'", "unknown array element type 77"});
  ExpectInvalid(Bytes().Header(0, 1).Str("flag").U32(7).U8(2).Zeros(8).str(),
                {"metadata key 'flag'", "bool value 2"});
  Bytes deep = Bytes().Header(0, 1).Str("deep").U32(9);
  for (int i = 0; i < kGgufMaxArrayDepth; ++i) deep.U32(9).U64(1);
  deep.U32(4).U64(0);
  ExpectInvalid(deep.str(), {"metadata key 'deep'", "nested deeper than 8"});
}

TEST(GgufMalformedTest, MaxNestingDepthIsAccepted) {
  Bytes ok = Bytes().Header(0, 1).Str("deep").U32(9);
  for (int i = 1; i < kGgufMaxArrayDepth; ++i) ok.U32(9).U64(1);
  ok.U32(4).U64(1).U32(42);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBuffer(ok.str());
  ASSERT_TRUE(f.ok()) << f.status();
}

TEST(GgufMalformedTest, DuplicateKeyAndTensor) {
  ExpectInvalid(Bytes().Header(0, 2).KvU32("a.b", 1).KvU32("a.b", 2).str(),
                {"duplicate metadata key 'a.b'", "entries 0 and 1"});
  ExpectInvalid(Bytes()
                    .Header(2, 0)
                    .TensorInfo("w", {8}, 0, 0)
                    .TensorInfo("w", {8}, 0, 32)
                    .PadTo(32)
                    .Zeros(64)
                    .str(),
                {"duplicate tensor name 'w'"});
}

TEST(GgufMalformedTest, BadAlignment) {
  for (uint32_t a : {0u, 3u, 48u, 0xffffffffu}) {
    SCOPED_TRACE(a);
    ExpectInvalid(Bytes().Header(0, 1).KvU32("general.alignment", a).str(),
                  {"general.alignment", "power of two"});
  }
  ExpectInvalid(Bytes().Header(0, 1).Str("general.alignment").U32(10).U64(64).str(),
                {"general.alignment must be uint32, found uint64"});
}

TEST(GgufMalformedTest, BadTensorShapes) {
  auto one = [](std::initializer_list<uint64_t> ne, uint32_t type = 0) {
    return Bytes().Header(1, 0).TensorInfo("blk.0.w", ne, type, 0).PadTo(32).Zeros(4096).str();
  };
  ExpectInvalid(one({1, 1, 1, 1, 1}), {"tensor 'blk.0.w'", "n_dims 5"});
  ExpectInvalid(one({}), {"tensor 'blk.0.w'", "n_dims 0"});
  ExpectInvalid(one({4, 0}), {"tensor 'blk.0.w'", "ne[1] = 0"});
  ExpectInvalid(one({uint64_t{1} << 63}), {"tensor 'blk.0.w'", "ne[0]"});
  ExpectInvalid(one({uint64_t{1} << 32, uint64_t{1} << 32}), {"blk.0.w", "overflow"});
  ExpectInvalid(one({uint64_t{1} << 62}), {"blk.0.w", "overflow"});  // bytes overflow
  ExpectInvalid(one({33}, 8), {"tensor 'blk.0.w'", "not a multiple", "Q8_0", "block size 32"});
  ExpectInvalid(one({16, 2}, 2), {"tensor 'blk.0.w'", "Q4_0", "block size 32"});
}

TEST(GgufMalformedTest, UnsupportedTensorTypes) {
  auto typed = [](uint32_t type) {
    return Bytes()
        .Header(1, 0)
        .TensorInfo("blk.3.ffn_up_exps.weight", {256}, type, 0)
        .PadTo(32)
        .Zeros(1024)
        .str();
  };
  ExpectInvalid(typed(23), {"blk.3.ffn_up_exps.weight", "IQ4_XS", "23"});
  ExpectInvalid(typed(22), {"blk.3.ffn_up_exps.weight", "IQ2_S"});
  ExpectInvalid(typed(1000), {"blk.3.ffn_up_exps.weight", "1000"});
}

TEST(GgufMalformedTest, TensorDataOutOfRange) {
  // 8 f32 = 32 bytes declared; only 16 present.
  ExpectInvalid(Bytes().Header(1, 0).TensorInfo("w", {8}, 0, 0).PadTo(32).Zeros(16).str(),
                {"tensor 'w'", "past the end of the file"});
  // Second tensor starts past the end.
  ExpectInvalid(Bytes()
                    .Header(2, 0)
                    .TensorInfo("a", {8}, 0, 0)
                    .TensorInfo("b", {8}, 0, 64)
                    .PadTo(32)
                    .Zeros(64)
                    .str(),
                {"tensor 'b'", "past the end"});
  // Offset near 2^64: offset + size would overflow.
  ExpectInvalid(
      Bytes().Header(1, 0).TensorInfo("w", {8}, 0, ~uint64_t{0} - 31).PadTo(32).Zeros(32).str(),
      {"tensor 'w'", "18446744073709551584", "past the end"});
  // Data section itself (the padding) missing although tensors exist.
  ExpectInvalid(Bytes().Header(1, 0).TensorInfo("w", {1}, 0, 0).str(),
                {"data section", "past the end"});
}

TEST(GgufMalformedTest, MisalignedTensorOffset) {
  ExpectInvalid(Bytes().Header(1, 0).TensorInfo("w", {4}, 0, 16).PadTo(32).Zeros(64).str(),
                {"tensor 'w'", "data offset 16", "not a multiple of the alignment 32"});
  ExpectInvalid(Bytes()
                    .Header(1, 1)
                    .KvU32("general.alignment", 64)
                    .TensorInfo("w", {4}, 0, 32)
                    .PadTo(64)
                    .Zeros(128)
                    .str(),
                {"tensor 'w'", "alignment 64"});
}

TEST(GgufMalformedTest, ErrorsCarryByteOffsets) {
  ExpectInvalid(Bytes().Header(0, 2).KvU32("a", 1).KvU32("a", 2).str(), {"offset 41"});
}

TEST(GgufMalformedTest, MetadataOnlyFileMayOmitFinalPadding) {
  const std::string bytes = Bytes().Header(0, 1).KvU32("x", 5).str();
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBuffer(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->data_offset(), bytes.size());
  EXPECT_EQ(*(*f)->GetUint32("x"), 5u);
}

TEST(GgufMalformedTest, OpenErrors) {
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open("/nonexistent/dir/x.gguf");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("/nonexistent/dir/x.gguf"));
  f = GgufFile::Open(::testing::TempDir());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("not a regular file"));
  const std::string empty =
      ::testing::TempDir() + "/gguf_empty_" + std::to_string(::getpid()) + ".gguf";
  std::ofstream(empty, std::ios::binary | std::ios::trunc).flush();
  f = GgufFile::Open(empty);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("empty file"));
  std::remove(empty.c_str());
  // A FIFO is refused at once (opening it had waited for a writer forever).
  const std::string fifo =
      ::testing::TempDir() + "/gguf_fifo_" + std::to_string(::getpid()) + ".gguf";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  f = GgufFile::Open(fifo);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("not a regular file"));
  std::remove(fifo.c_str());
}

// The fuzz seed corpus is written by tests/fuzz/make_corpus.py, an encoder
// independent of GgufWriter: its valid files must read back with the values it
// wrote, its broken ones must fail for the reason their name states.
std::string CorpusPath(const std::string& name) {
  return std::string(ST_SOURCE_DIR) + "/tests/fuzz/corpus/gguf/" + name;
}

TEST(GgufCorpusTest, IndependentlyEncodedValidFiles) {
  for (const char* name : {"valid_v2_all_types.gguf", "valid_v3_all_types.gguf"}) {
    SCOPED_TRACE(name);
    absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(CorpusPath(name));
    ASSERT_TRUE(f.ok()) << f.status();
    const GgufFile& g = **f;
    EXPECT_EQ(g.version(), name[7] == '2' ? 2u : 3u);
    EXPECT_EQ(*g.GetString("general.architecture"), "smallthinker");
    EXPECT_EQ(*g.GetString("general.name"), "fuzz seed \xE4\xB8\x96\xE7\x95\x8C");
    EXPECT_EQ(*g.GetUint64("t.u64"), std::numeric_limits<uint64_t>::max());
    EXPECT_EQ(std::get<int64_t>(g.Find("t.i64")->v), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(std::get<int64_t>(g.Find("t.i16")->v), -32768);
    EXPECT_EQ(*g.GetFloat32("t.f32"), 1e-6f);
    EXPECT_EQ(*g.GetFloat32("t.f64"), 1500000.0f);
    EXPECT_TRUE(*g.GetBool("t.bool"));
    EXPECT_EQ(*g.GetString("t.str_empty"), "");
    EXPECT_THAT(*g.GetInt32Array("a.i32"), ::testing::ElementsAre(1, 3, 4, 5));
    EXPECT_THAT(*g.GetStringArray("a.str"), ::testing::ElementsAre("", "a b", "\xC4\xA0hello"));
    const auto& nested = std::get<GgufArray>(g.Find("a.nested")->v);
    ASSERT_EQ(nested.arrays.size(), 3u);
    EXPECT_EQ(nested.arrays[1].strings, std::vector<std::string>{"x"});
    EXPECT_EQ(nested.arrays[2].arrays[0].floats, std::vector<double>{1.0});
    ASSERT_EQ(g.tensors().size(), 7u);
    // A storage-only type (kernels/ggml_storage.h): sized by its own blocks.
    const GgufTensorInfo* q6 = g.FindTensor("output.weight");
    ASSERT_NE(q6, nullptr);
    EXPECT_NE(q6->storage, nullptr);
    EXPECT_EQ(q6->type_name(), "Q6_K");
    EXPECT_EQ(q6->ggml_type, 14u);
    EXPECT_EQ(q6->n_bytes, 2u * 210);
    const GgufTensorInfo* down = g.FindTensor("blk.0.ffn_down_exps.weight");
    ASSERT_NE(down, nullptr);
    EXPECT_EQ(down->type, DType::kQ4_0);
    EXPECT_EQ(down->ne, (std::vector<uint64_t>{32, 1, 1, 3}));
    EXPECT_EQ(down->n_bytes, 3u * 18);
    EXPECT_EQ(g.FindTensor("odd.f16")->n_bytes, 14u);
  }
}

TEST(GgufCorpusTest, BrokenFilesFailForTheirStatedReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"bad_magic", "bad magic"},
      {"bad_version1", "unsupported GGUF version 1 (only 2 and 3)"},
      {"bad_bigendian", "big-endian"},
      {"bad_tensor_count", "tensor count 4611686018427387904"},
      {"bad_kv_count", "metadata count 18446744073709551615"},
      {"bad_string_len", "string length 9223372036854775808"},
      {"bad_array_len", "array length 2305843009213693952"},
      {"bad_value_type", "unknown metadata value type 13"},
      {"bad_bool", "bool value 2"},
      {"bad_dup_key", "duplicate metadata key 'k'"},
      {"bad_dup_tensor", "duplicate tensor name 'output_norm.weight'"},
      {"bad_alignment", "general.alignment 48"},
      {"bad_alignment_type", "must be uint32"},
      {"bad_deep_nesting", "nested deeper"},
      {"bad_iq4_xs", "IQ4_XS"},
      {"bad_q4_k_block", "not a multiple of the Q4_K block size 256"},
      {"bad_iq2_s", "IQ2_S"},
      {"bad_ndims5", "n_dims 5"},
      {"bad_zero_dim", "ne[1] = 0"},
      {"bad_dim_overflow", "overflows"},
      {"bad_block_multiple", "block size 32"},
      {"bad_q6_k_block", "not a multiple of the Q6_K block size 256"},
      {"bad_misaligned", "not a multiple of the alignment"},
      {"bad_past_end", "past the end"},
      {"bad_offset_overflow", "past the end"},
      {"trunc_000", "empty file"},
      {"trunc_319", "truncated"},
  };
  for (const auto& [stem, needle] : cases) {
    SCOPED_TRACE(stem);
    absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(CorpusPath(stem + ".gguf"));
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
    EXPECT_THAT(std::string(f.status().message()), HasSubstr(needle));
  }
}

}  // namespace
}  // namespace st
