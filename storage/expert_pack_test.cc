#include "storage/expert_pack.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/ggml_storage.h"
#include "kernels/packed_kquant.h"
#include "model/config.h"
#include "storage/pack_test_util.h"
#include "storage/pack_writer.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

// True if `text` contains `part` (gmock is not linked).
::testing::AssertionResult Has(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' lacks '" << part << "'";
}

// Reads every record of the pack at `path`: its checksum holds and it is
// what st::testing::CompareRecord computes from the GGUF.
void ExpectEveryRecordAsTheGgufHoldsIt(const std::string& path, const GgufFile& gguf,
                                       const ExpertPack& pack) {
  const PackHeader& h = pack.header();
  st::testing::AlignedBuffer rec(h.record_size);
  const int fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << path;
  for (int l = 0; l < static_cast<int>(h.n_layers); ++l) {
    for (int e = 0; e < static_cast<int>(h.n_experts); ++e) {
      ASSERT_EQ(pread(fd, rec.get(), h.record_size, h.RecordOffset(l, e)),
                static_cast<ssize_t>(h.record_size));
      ASSERT_TRUE(pack.VerifyRecord(l, e, rec.get()).ok());
      ASSERT_EQ(st::testing::CompareRecord(gguf, h, l, e, rec.get()), "");
    }
  }
  close(fd);
}

class ExpertPackTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    auto m = st::testing::SynthModel(dir_.path(), "tiny", GetParam());
    ASSERT_TRUE(m.ok()) << m.status();
    gguf_path_ = *m;
  }
  st::testing::TempDir dir_;
  std::string gguf_path_;
};

TEST_P(ExpertPackTest, WritesEveryRecordAsTheGgufHoldsIt) {
  auto w = WritePack({.gguf_path = gguf_path_, .progress = false});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->path, gguf_path_ + ".stpack");
  EXPECT_EQ(w->down_requantized, IsBlockQuantized(GetParam()));
  auto gguf = GgufFile::Open(gguf_path_);
  ASSERT_TRUE(gguf.ok());
  auto pack = ExpertPack::OpenFor(w->path, **gguf);
  ASSERT_TRUE(pack.ok()) << pack.status();
  const PackHeader& h = (*pack)->header();
  auto c = LoadModelConfig(**gguf);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(static_cast<int>(h.n_layers), c->n_layers);
  EXPECT_EQ(static_cast<int>(h.n_experts), c->n_experts);
  EXPECT_EQ(h.expert_type, GetParam());
  EXPECT_EQ(h.record_size % kPackAlignment, 0u);
  EXPECT_EQ(h.records_offset % kPackAlignment, 0u);
  EXPECT_EQ(std::filesystem::file_size(w->path), h.file_size);
  // Quantized experts: down^T re-quantized, gate in the 16-row packed layout
  // (d_expert of the test model is a multiple of 16); Q4_0 up rows split.
  EXPECT_EQ(h.flags, IsBlockQuantized(GetParam())
                         ? kPackFlagDownRequantized | kPackFlagGatePacked |
                               (GetParam() == DType::kQ4_0 ? kPackFlagUpSplit : 0u)
                         : 0u);

  ExpectEveryRecordAsTheGgufHoldsIt(w->path, **gguf, **pack);
}

INSTANTIATE_TEST_SUITE_P(Types, ExpertPackTest,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kQ8_0, DType::kQ4_0),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

// A tiny Q4_K_M file (Q4_K, with Q6_K down in layers 2 and 3) in `dir`,
// d_model 512 and d_expert 256 (a down with rows and cols swapped shows).
absl::StatusOr<std::string> KQuantModel(const st::testing::TempDir& dir) {
  return st::testing::SynthModel(dir.path(), "tiny-256", DType::kQ8_0, Gating::kSigmoid, 3, false,
                                 "", SynthMix::kQ4_K_M, /*d_model=*/512);
}

// A Q4_K_M file (Q4_K, with Q6_K down in some layers): by default its
// records hold the experts as the file stores them, each matrix with room
// for its largest type, the types per layer in the header.
TEST(KQuantPackTest, RecordsHoldTheExpertsAsStored) {
  st::testing::TempDir dir;
  auto m = KQuantModel(dir);
  ASSERT_TRUE(m.ok()) << m.status();
  auto w = WritePack({.gguf_path = *m, .progress = false});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->as_stored);
  EXPECT_FALSE(w->down_requantized);
  auto gguf = GgufFile::Open(*m);
  ASSERT_TRUE(gguf.ok());
  auto pack = ExpertPack::OpenFor(w->path, **gguf);
  ASSERT_TRUE(pack.ok()) << pack.status();
  const PackHeader& h = (*pack)->header();
  const bool packed = PackedKQuantKernelsHere();
  EXPECT_EQ(h.flags, kPackFlagAsStored | (packed ? kPackFlagKQuantPacked : 0u));
  EXPECT_EQ(h.TypeNames(), "Q4_K, Q6_K");
  ASSERT_EQ(h.stored_types.size(), 3u * h.n_layers);
  // 4 layers, d_model 512, d_expert 256; the downs of layers 2 and 3 are
  // Q6_K (llama.cpp's use_more_bits), those of 0 and 1 Q4_K.
  ASSERT_EQ(h.d_model, 512u);
  ASSERT_EQ(h.d_expert, 256u);
  EXPECT_EQ(h.stored_types[0], kGgmlQ4_K);
  EXPECT_EQ(h.stored_types[2], kGgmlQ4_K);
  EXPECT_EQ(h.stored_types[3 * 3 + 2], kGgmlQ6_K);
  const uint64_t q4k = 512 * kQ4_KBlockBytes, q6k = 512 * kQ6_KBlockBytes;  // 512 blocks
  EXPECT_EQ(h.MatrixBytes(0, 2), q4k);
  EXPECT_EQ(h.MatrixBytes(3, 2), q6k);
  EXPECT_EQ(h.matrix_offset[1], AlignUp(q4k, kPackAlignment));
  EXPECT_EQ(h.matrix_offset[2], 2 * AlignUp(q4k, kPackAlignment));
  EXPECT_EQ(h.record_size, 2 * AlignUp(q4k, kPackAlignment) + AlignUp(q6k, kPackAlignment));
  ExpectEveryRecordAsTheGgufHoldsIt(w->path, **gguf, **pack);
  // The matrices as the kernels read them: the file's formats, down
  // [d_model, d_expert]; gate and down in the 16-row packed layout (no
  // row-major view), up in rows.
  const char* rec = reinterpret_cast<const char*>(uintptr_t{1} << 20);
  const MatrixRef down = h.RecordMatrix(rec, 3, 2);
  ASSERT_NE(down.storage, nullptr);
  EXPECT_EQ(down.storage->ggml_type, kGgmlQ6_K);
  EXPECT_EQ(down.packed_kquant, packed ? rec + h.matrix_offset[2] : nullptr);
  EXPECT_EQ(down.data, packed ? nullptr : rec + h.matrix_offset[2]);
  EXPECT_EQ(down.rows, h.d_model);
  EXPECT_EQ(down.cols, h.d_expert);
  EXPECT_EQ(h.RecordMatrix(rec, 1, 2).storage->ggml_type, kGgmlQ4_K);
  EXPECT_EQ(h.RecordMatrix(rec, 1, 0).packed_kquant, packed ? rec : nullptr);
  const MatrixRef up = h.RecordMatrix(rec, 1, 1);
  EXPECT_EQ(up.data, rec + h.matrix_offset[1]);
  EXPECT_EQ(up.packed_kquant, nullptr);
}

// The type table is part of the checksummed header: a byte changed there
// (one that leaves every size as it was) is DATA_LOSS, and one naming a
// format this build does not compute as stored is refused by name.
TEST(KQuantPackTest, ChangedTypeTableIsRefused) {
  st::testing::TempDir dir;
  auto m = KQuantModel(dir);
  ASSERT_TRUE(m.ok()) << m.status();
  auto w = WritePack({.gguf_path = *m, .progress = false});
  ASSERT_TRUE(w.ok()) << w.status();
  // Layer 1's down (entry 3 * 1 + 2 of the table) is Q4_K; another layer's
  // down is Q6_K, so Q6_K here changes no size.
  std::string bytes;
  {
    std::ifstream in(w->path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_EQ(bytes[kPackStoredTypesOffset + 5], static_cast<char>(kGgmlQ4_K));
  auto write = [&](char type) {
    std::string copy = bytes;
    copy[kPackStoredTypesOffset + 5] = type;
    const std::string out = dir.File("changed.stpack");
    std::ofstream(out, std::ios::binary).write(copy.data(), static_cast<std::streamsize>(copy.size()));
    return out;
  };
  auto changed = ExpertPack::Open(write(static_cast<char>(kGgmlQ6_K)));
  ASSERT_FALSE(changed.ok());
  EXPECT_EQ(changed.status().code(), absl::StatusCode::kDataLoss) << changed.status();
  EXPECT_TRUE(Has(std::string(changed.status().message()), "header checksum"));
  auto unknown = ExpertPack::Open(write(static_cast<char>(kGgmlQ5_K)));
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument) << unknown.status();
  EXPECT_TRUE(Has(std::string(unknown.status().message()), "(Q5_K) is not one this build computes"));
}

// With kquant_as_q8: Q8_0 records, each its experts' Q8_0 conversion, as
// the in-RAM path computes them under --kquant-as-q8.
TEST(KQuantPackTest, AsQ8RecordsHoldTheExpertsConvertedToQ8_0) {
  st::testing::TempDir dir;
  auto m = KQuantModel(dir);
  ASSERT_TRUE(m.ok()) << m.status();
  auto w = WritePack({.gguf_path = *m, .progress = false, .kquant_as_q8 = true});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->down_requantized);
  EXPECT_FALSE(w->as_stored);
  auto gguf = GgufFile::Open(*m);
  ASSERT_TRUE(gguf.ok());
  ASSERT_NE((*gguf)->FindTensor("blk.0.ffn_gate_exps.weight")->storage, nullptr);
  EXPECT_EQ((*gguf)->FindTensor("blk.3.ffn_down_exps.weight")->type_name(), "Q6_K");
  auto pack = ExpertPack::OpenFor(w->path, **gguf);
  ASSERT_TRUE(pack.ok()) << pack.status();
  const PackHeader& h = (*pack)->header();
  EXPECT_EQ(h.expert_type, DType::kQ8_0);
  EXPECT_EQ(h.flags, kPackFlagDownRequantized | kPackFlagGatePacked);
  ExpectEveryRecordAsTheGgufHoldsIt(w->path, **gguf, **pack);
}

TEST(PowerInferLayoutTest, TransposedDownIsCopiedAsIs) {
  st::testing::TempDir dir;
  auto m = st::testing::SynthModel(dir.path(), "tiny", DType::kF32);
  ASSERT_TRUE(m.ok());
  auto contents = st::testing::ReadGguf(*m);
  ASSERT_TRUE(contents.ok());
  for (auto& t : contents->tensors) {
    if (t.name.find("ffn_down_exps") == std::string::npos) continue;
    const size_t de = t.ne[0], dm = t.ne[1], ne = t.ne[2];  // [E][d_model][d_expert]
    std::string out(t.bytes.size(), '\0');
    const float* in = reinterpret_cast<const float*>(t.bytes.data());
    float* o = reinterpret_cast<float*>(out.data());
    for (size_t e = 0; e < ne; ++e)
      for (size_t i = 0; i < dm; ++i)
        for (size_t j = 0; j < de; ++j) o[e * dm * de + j * dm + i] = in[e * dm * de + i * de + j];
    t.bytes = out;
    t.ne = {dm, de, ne};
  }
  const std::string path = dir.File("powerinfer.gguf");
  ASSERT_TRUE(st::testing::WriteGguf(*contents, path).ok());
  auto w = WritePack({.gguf_path = path, .progress = false});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_FALSE(w->down_requantized);
  auto gguf = GgufFile::Open(path);
  auto pack = ExpertPack::OpenFor(w->path, **gguf);
  ASSERT_TRUE(pack.ok()) << pack.status();
  const PackHeader& h = (*pack)->header();
  st::testing::AlignedBuffer rec(h.record_size);
  int fd = open(w->path.c_str(), O_RDONLY);
  ASSERT_EQ(pread(fd, rec.get(), h.record_size, h.RecordOffset(1, 3)), static_cast<ssize_t>(h.record_size));
  close(fd);
  EXPECT_EQ(st::testing::CompareRecord(**gguf, h, 1, 3, rec.get()), "");
  // And it equals the pack made from the upstream layout (F32: exact transpose).
  auto w0 = WritePack({.gguf_path = *m, .progress = false});
  ASSERT_TRUE(w0.ok());
  auto pack0 = ExpertPack::Open(w0->path);
  EXPECT_EQ((*pack0)->checksum(1, 3), (*pack)->checksum(1, 3));
}

class PackFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = st::testing::SynthModel(dir_.path(), "tiny", DType::kQ4_0);
    ASSERT_TRUE(m.ok()) << m.status();
    gguf_path_ = *m;
    auto w = WritePack({.gguf_path = gguf_path_, .progress = false});
    ASSERT_TRUE(w.ok()) << w.status();
    pack_path_ = w->path;
  }
  st::testing::TempDir dir_;
  std::string gguf_path_, pack_path_;
};

TEST_F(PackFileTest, PackFromAnotherModelIsRefusedByFingerprint) {
  auto other = st::testing::SynthModel(dir_.path(), "tiny", DType::kQ4_0, Gating::kSigmoid, 8);
  ASSERT_TRUE(other.ok());
  auto gguf = GgufFile::Open(*other);
  ASSERT_TRUE(gguf.ok());
  auto pack = ExpertPack::OpenFor(pack_path_, **gguf);
  ASSERT_EQ(pack.status().code(), absl::StatusCode::kFailedPrecondition) << pack.status();
  EXPECT_TRUE(Has(std::string(pack.status().message()), "another model"));
  EXPECT_TRUE(Has(std::string(pack.status().message()), *other));
  EXPECT_NE(GgufFingerprint(**gguf), ExpertPack::Open(pack_path_).value()->header().fingerprint);
}

TEST_F(PackFileTest, TruncatedPackIsDataLossAtOpen) {
  const auto size = static_cast<int64_t>(std::filesystem::file_size(pack_path_));
  for (int64_t cut : {size - 1, size - 4096, int64_t{5000}, int64_t{100}}) {
    const std::string out = dir_.File("cut.stpack");
    st::testing::CopyModified(pack_path_, out, -1, cut);
    auto pack = ExpertPack::Open(out);
    ASSERT_EQ(pack.status().code(), absl::StatusCode::kDataLoss) << cut << ": " << pack.status();
    EXPECT_TRUE(Has(std::string(pack.status().message()), "truncated"));
    EXPECT_TRUE(Has(std::string(pack.status().message()), out));
  }
}

TEST_F(PackFileTest, BadHeaderIsRejected) {
  const std::string out = dir_.File("bad.stpack");
  st::testing::CopyModified(pack_path_, out, 0);  // magic
  EXPECT_EQ(ExpertPack::Open(out).status().code(), absl::StatusCode::kInvalidArgument);
  st::testing::CopyModified(pack_path_, out, 32);  // d_model
  EXPECT_EQ(ExpertPack::Open(out).status().code(), absl::StatusCode::kInvalidArgument);
  st::testing::CopyModified(pack_path_, out, 17);  // fingerprint: header checksum
  EXPECT_EQ(ExpertPack::Open(out).status().code(), absl::StatusCode::kDataLoss);
  st::testing::CopyModified(pack_path_, out, 4100);  // checksum table
  EXPECT_EQ(ExpertPack::Open(out).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ExpertPack::Open(dir_.File("none")).status().code(), absl::StatusCode::kNotFound);
  // A FIFO is refused at once (opening it had waited for a writer forever).
  ASSERT_EQ(mkfifo(dir_.File("fifo").c_str(), 0600), 0);
  EXPECT_EQ(ExpertPack::Open(dir_.File("fifo")).status().code(),
            absl::StatusCode::kInvalidArgument);
  st::testing::CopyModified(pack_path_, out, -1);
  std::ofstream(out, std::ios::app) << "x";
  EXPECT_EQ(ExpertPack::Open(out).status().code(), absl::StatusCode::kInvalidArgument);
}

absl::StatusCode FailingConvert(const std::string& gguf, const std::string& out, int err,
                                std::string* message) {
  int calls = 0;
  auto r = WritePack({.gguf_path = gguf,
                      .out_path = out,
                      .progress = false,
                      .pwrite_fn = [&](int fd, const void* p, size_t n, off_t off) -> ssize_t {
                        if (++calls > 3) {
                          errno = err;
                          return -1;
                        }
                        return pwrite(fd, p, n / 2 + 1, off);  // short writes too
                      }});
  *message = std::string(r.status().message());
  return r.status().code();
}

TEST_F(PackFileTest, FullDiskIsResourceExhaustedAndLeavesNoFile) {
  const std::string out = dir_.File("full.stpack");
  std::string msg;
  EXPECT_EQ(FailingConvert(gguf_path_, out, ENOSPC, &msg), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Has(msg, out));
  EXPECT_EQ(FailingConvert(gguf_path_, out, EIO, &msg), absl::StatusCode::kInternal);
  EXPECT_TRUE(Has(msg, "Input/output error"));
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    EXPECT_EQ(entry.path().string().find("full.stpack"), std::string::npos) << entry.path();
  }
}

TEST_F(PackFileTest, DevFullIsResourceExhausted) {
  // /dev/full itself: the temporary file cannot be created beside it unless
  // we are root, so write through the injectable function instead when not.
  int fd = open("/dev/full", O_WRONLY);
  if (fd < 0) GTEST_SKIP() << "no /dev/full";
  std::string msg;
  auto r = WritePack({.gguf_path = gguf_path_,
                      .out_path = dir_.File("devfull.stpack"),
                      .progress = false,
                      .pwrite_fn = [fd](int, const void* p, size_t n, off_t) -> ssize_t {
                        return write(fd, p, n);
                      }});
  close(fd);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
}

}  // namespace
}  // namespace st

namespace st {
namespace {

TEST(PackHeaderTest, GatePackedFlagNeedsAPackableTypeAndShape) {
  EXPECT_TRUE(PackHeader::Make(DType::kQ4_0, 1, 2, 4, 64, 32, kPackFlagGatePacked).ok());
  EXPECT_TRUE(PackHeader::Make(DType::kQ8_0, 1, 2, 4, 64, 48, kPackFlagGatePacked).ok());
  EXPECT_FALSE(PackHeader::Make(DType::kF16, 1, 2, 4, 64, 32, kPackFlagGatePacked).ok());
  EXPECT_FALSE(PackHeader::Make(DType::kQ4_0, 1, 2, 4, 64, 40, kPackFlagGatePacked).ok());
  EXPECT_FALSE(PackHeader::Make(DType::kQ4_0, 1, 2, 4, 64, 32, 32u).ok());  // unknown flag
  // As stored takes the types per layer: MakeAsStored's alone.
  EXPECT_FALSE(PackHeader::Make(DType::kQ4_0, 1, 2, 4, 64, 32, kPackFlagAsStored).ok());
  EXPECT_TRUE(PackHeader::MakeAsStored(1, 1, 4, 256, 256, {kGgmlQ4_K, kGgmlQ4_K, kGgmlQ6_K}).ok());
  EXPECT_FALSE(PackHeader::MakeAsStored(1, 1, 4, 256, 128, {kGgmlQ4_K, kGgmlQ4_K, kGgmlQ6_K}).ok());
  EXPECT_FALSE(PackHeader::MakeAsStored(1, 1, 4, 256, 256, {kGgmlQ4_K, kGgmlQ4_K}).ok());
  EXPECT_FALSE(PackHeader::MakeAsStored(1, 1, 4, 256, 256, {kGgmlQ4_K, kGgmlQ4_K, kGgmlQ5_K}).ok());
}

TEST(PackHeaderTest, SplitUpRowsAreQ4_0Only) {
  EXPECT_TRUE(PackHeader::Make(DType::kQ4_0, 1, 2, 4, 64, 32, kPackFlagUpSplit).ok());
  EXPECT_FALSE(PackHeader::Make(DType::kQ8_0, 1, 2, 4, 64, 32, kPackFlagUpSplit).ok());
  EXPECT_FALSE(PackHeader::Make(DType::kF16, 1, 2, 4, 64, 32, kPackFlagUpSplit).ok());
}

TEST(PackHeaderTest, GateInTheOldPackedLayoutAsksForAReconvert) {
  auto h = PackHeader::Make(DType::kQ4_0, 1, 2, 4, 64, 32, kPackFlagGatePackedV1);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(h.status().message()).find("re-run `smallthinker convert`"),
            std::string::npos);
}

// An as-stored pack in the other layout than this CPU computes K-quants in
// (here with AVX2 or AVX-512: rows, as session 28's build wrote them) would give
// other numbers than the experts in RAM: refused, asking for a convert.
TEST(PackHeaderTest, AsStoredPackInTheOtherLayoutAsksForAReconvert) {
  auto h = PackHeader::MakeAsStored(1, 1, 4, 256, 256, {kGgmlQ4_K, kGgmlQ4_K, kGgmlQ6_K},
                                    /*kquant_packed=*/!PackedKQuantKernelsHere());
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->flags, kPackFlagAsStored | (PackedKQuantKernelsHere() ? 0u : kPackFlagKQuantPacked));
  st::testing::TempDir dir;
  const std::string path = dir.File("old.stpack");
  {
    std::ofstream out(path, std::ios::binary);
    const std::string prefix = SerializePackPrefix(*h, std::vector<uint64_t>(h->record_count, 0));
    out.write(prefix.data(), static_cast<std::streamsize>(prefix.size()));
    const std::string records(h->file_size - prefix.size(), '\0');
    out.write(records.data(), static_cast<std::streamsize>(records.size()));
  }
  auto pack = ExpertPack::Open(path);
  ASSERT_FALSE(pack.ok());
  EXPECT_EQ(pack.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Has(std::string(pack.status().message()), "re-run `smallthinker convert`"));
}

// The record checksum is XXH3-64 whichever implementation computes it (the
// run-time dispatch on x86): packs written by any build verify in any other.
// Values from libxxhash's portable XXH3_64bits.
TEST(RecordChecksumTest, KnownValues) {
  const std::pair<size_t, uint64_t> cases[] = {
      {0, 0x2d06800538d394c2ull},       {1, 0x929e358d27ae3ee2ull},
      {240, 0xe9b8ecbc23497c67ull},     {4096, 0x5ead6d2e8c9a742dull},
      {1 << 20, 0x6bfc3c9b3909a1b3ull}, {(1 << 20) + 4096 + 17, 0xf3362024f3c3058full}};
  for (const auto& [n, want] : cases) {
    std::vector<unsigned char> v(n);
    uint32_t x = 12345;
    for (unsigned char& c : v) {
      x = x * 1664525u + 1013904223u;
      c = static_cast<unsigned char>(x >> 24);
    }
    EXPECT_EQ(RecordChecksum(v.data(), n), want) << n << " bytes";
    // Fed in parts (as the io_uring source hashes a record's chunks), and
    // again after a Reset: the same value.
    RecordHasher hasher;
    for (int round = 0; round < 2; ++round) {
      hasher.Reset();
      for (size_t at = 0; at < n; at += 4096 + 3) {
        hasher.Update(v.data() + at, std::min<size_t>(4096 + 3, n - at));
      }
      EXPECT_EQ(hasher.Digest(), want) << n << " bytes in parts, round " << round;
    }
  }
}

}  // namespace
}  // namespace st
