// Files as llama.cpp's quantizer makes them: the LM head of a Q4_0 (Q4_1,
// Q5_0, Q5_1) model is Q6_K unless told otherwise. Such a tensor loads as
// its dequantized values quantized to Q8_0 (so a model whose file holds that
// Q8_0 matrix gives the same logits bit for bit); Q6_K experts, and types the
// engine cannot read at all, are refused naming the type.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/fp16.h"
#include "kernels/ggml_storage.h"
#include "kernels/quant.h"
#include "model/config.h"
#include "model/gguf.h"
#include "model/model.h"
#include "model/session.h"
#include "model/synth.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

constexpr size_t kQK_K = 256;

// A plain Q6_K quantizer (one scale per 16 weights, no search: ggml's
// quantize_row_q6_K_ref searches scales, which only changes the values
// stored, not how they are read). Layout inverse to DequantizeQ6_K.
std::string QuantizeQ6_K(const float* x, size_t n) {
  std::string out(n / kQK_K * kQ6_KBlockBytes, '\0');
  for (size_t b = 0; b < n / kQK_K; ++b) {
    const float* xb = x + b * kQK_K;
    auto* block = reinterpret_cast<uint8_t*>(out.data() + b * kQ6_KBlockBytes);
    float scale[16];
    float max_scale = 0;
    for (int j = 0; j < 16; ++j) {
      float amax = 0;
      for (int i = 0; i < 16; ++i) amax = std::max(amax, std::fabs(xb[16 * j + i]));
      scale[j] = amax / 31;
      max_scale = std::max(max_scale, scale[j]);
    }
    const float d = max_scale / 127;
    const uint16_t d16 = F32ToF16(d);
    const float dd = F16ToF32(d16);
    int8_t sc[16];
    int q[kQK_K];
    for (int j = 0; j < 16; ++j) {
      sc[j] = dd > 0 ? static_cast<int8_t>(std::lround(scale[j] / dd)) : 0;
      const float step = dd * sc[j];
      for (int i = 0; i < 16; ++i) {
        const int v = step > 0 ? static_cast<int>(std::lround(xb[16 * j + i] / step)) : 0;
        q[16 * j + i] = std::clamp(v, -32, 31) + 32;
      }
    }
    uint8_t* ql = block;
    uint8_t* qh = block + 128;
    for (int half = 0; half < 2; ++half) {
      const int* qq = q + 128 * half;
      for (int l = 0; l < 32; ++l) {
        ql[64 * half + l] = (qq[l] & 0xF) | ((qq[l + 64] & 0xF) << 4);
        ql[64 * half + l + 32] = (qq[l + 32] & 0xF) | ((qq[l + 96] & 0xF) << 4);
        qh[32 * half + l] = (qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) | ((qq[l + 64] >> 4) << 4) |
                            ((qq[l + 96] >> 4) << 6);
      }
    }
    std::memcpy(block + 192, sc, 16);
    std::memcpy(block + 208, &d16, 2);
  }
  return out;
}

class StorageTypesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The tiny preset with d_model 256: Q6_K rows are whole 256-weight blocks.
    auto spec = SynthPreset("tiny");
    ASSERT_TRUE(spec.ok());
    spec->d_model = 256;
    SynthOptions o{.spec = *spec, .type = DType::kQ8_0, .out_path = dir_.File("q8.gguf"),
                   .seed = 5, .progress = false};
    ASSERT_TRUE(WriteSyntheticModel(o).ok());
    auto c = testing::ReadGguf(o.out_path);
    ASSERT_TRUE(c.ok()) << c.status();
    contents_ = *std::move(c);
  }


public:
  std::vector<float> Logits(const std::string& path) {
    auto m = Model::Load(path, ModelOptions{.threads = 1});
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return {};
    Session s(**m, 64);
    auto logits = s.Evaluate({72, 101, 108, 108, 111}, false);
    EXPECT_TRUE(logits.ok()) << logits.status();
    return logits.ok() ? *logits : std::vector<float>{};
  }


 protected:
  testing::TempDir dir_;
  testing::GgufContents contents_;
};

// Writes the model with `name` in Q6_K and with the same values in Q8_0
// (ggml's Q6_K dequantization, then Q8_0) and expects the same logits from
// both; returns the Q6_K file's path.
std::string ExpectQ6_KReadsAsQ8_0(StorageTypesTest* t, testing::GgufContents contents,
                                  const std::string& name, const std::string& dir_file) {
  testing::GgufContents::Tensor* w = contents.FindTensor(name);
  EXPECT_NE(w, nullptr);
  if (w == nullptr) return "";
  const std::vector<uint64_t> ne = w->ne;
  std::vector<float> x(ne[0] * ne[1]);
  DequantizeRow(w->type, w->bytes.data(), x.data(), x.size());
  const std::string q6 = QuantizeQ6_K(x.data(), x.size());

  // The Q6_K file, as llama.cpp writes it.
  w->storage_type = kGgmlQ6_K;
  w->bytes = q6;
  const std::string q6_path = dir_file + "-q6k.gguf";
  EXPECT_TRUE(testing::WriteGguf(contents, q6_path).ok());
  auto file = GgufFile::Open(q6_path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return "";
  const GgufTensorInfo* info = (*file)->FindTensor(name);
  EXPECT_NE(info, nullptr);
  EXPECT_NE(info->storage, nullptr);
  EXPECT_EQ(info->type_name(), "Q6_K");
  EXPECT_EQ(info->n_bytes, ne[1] * kQ6_KBlockBytes * (ne[0] / kQK_K));

  // The same values as a Q8_0 tensor.
  std::vector<float> row(ne[0]);
  std::string q8(ne[1] * RowBytes(DType::kQ8_0, ne[0]), '\0');
  const size_t q6_row = ne[0] / kQK_K * kQ6_KBlockBytes;
  for (size_t r = 0; r < ne[1]; ++r) {
    DequantizeQ6_K(reinterpret_cast<const uint8_t*>(q6.data()) + r * q6_row, row.data(), ne[0]);
    QuantizeRow(DType::kQ8_0, row.data(), q8.data() + r * RowBytes(DType::kQ8_0, ne[0]), ne[0]);
  }
  w->storage_type = 0;
  w->type = DType::kQ8_0;
  w->bytes = q8;
  const std::string q8_path = dir_file + "-q8.gguf";
  EXPECT_TRUE(testing::WriteGguf(contents, q8_path).ok());

  const std::vector<float> a = t->Logits(q6_path), b = t->Logits(q8_path);
  EXPECT_EQ(a.size(), b.size());
  EXPECT_FALSE(a.empty());
  if (a.size() == b.size()) {
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  }
  return q6_path;
}

TEST_F(StorageTypesTest, Q6_KLmHeadReadsAsItsValuesInQ8_0) {
  const std::string q6_path =
      ExpectQ6_KReadsAsQ8_0(this, contents_, "output.weight", dir_.File("head"));
  ASSERT_FALSE(q6_path.empty());
  // Near the original head's logits (Q6_K keeps the values to ~1%).
  const std::vector<float> a = Logits(q6_path), orig = Logits(dir_.File("q8.gguf"));
  ASSERT_EQ(orig.size(), a.size());
  double err = 0, mag = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, static_cast<double>(std::fabs(a[i] - orig[i])));
    mag = std::max(mag, static_cast<double>(std::fabs(orig[i])));
  }
  EXPECT_LT(err, 0.05 * mag) << "max |diff| " << err << " of max |logit| " << mag;
  // Packed, the converted head is held once: its row-layout copy is gone.
  auto m = Model::Load(q6_path, ModelOptions{.threads = 1});
  ASSERT_TRUE(m.ok()) << m.status();
  const MatrixRef& head = (*m)->weights().output;
  if (head.packed != nullptr) {
    EXPECT_EQ(head.data, nullptr);
  }
  // --huge-pages --no-repack: the converted head is in 2 MiB pages already
  // and is not copied again (the other hot matrices are, into one arena).
  auto h = Model::Load(q6_path, ModelOptions{.threads = 1, .huge_pages = true, .repack = false});
  ASSERT_TRUE(h.ok()) << h.status();
  const DenseWeights& w = (*h)->weights();
  ASSERT_EQ(w.arenas.size(), 2u);
  EXPECT_EQ(w.output.data, w.arenas[0]->data()) << "the conversion's own arena";
  EXPECT_EQ(w.output.packed, nullptr);
}

// A tied model: llama.cpp gives token_embd the LM head's type (Q6_K), and
// it serves both the embedding rows and the head.
TEST_F(StorageTypesTest, Q6_KTiedEmbeddingReadsAsItsValuesInQ8_0) {
  contents_.EraseTensor("output.weight");
  const std::string q6_path =
      ExpectQ6_KReadsAsQ8_0(this, contents_, "token_embd.weight", dir_.File("tied"));
  ASSERT_FALSE(q6_path.empty());
  auto m = Model::Load(q6_path, ModelOptions{.threads = 1});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_NE((*m)->weights().token_embd.data, nullptr) << "the embedding reads rows";
}

TEST_F(StorageTypesTest, Q6_KExpertsAreRefusedNamingTheType) {
  testing::GgufContents::Tensor* gate = contents_.FindTensor("blk.1.ffn_gate_exps.weight");
  ASSERT_NE(gate, nullptr);
  ASSERT_EQ(gate->ne[0] % kQK_K, 0u);
  std::vector<float> x(gate->ne[0] * gate->ne[1] * gate->ne[2]);
  DequantizeRow(gate->type, gate->bytes.data(), x.data(), x.size());
  gate->bytes = QuantizeQ6_K(x.data(), x.size());
  gate->storage_type = kGgmlQ6_K;
  const std::string path = dir_.File("q6k-experts.gguf");
  ASSERT_TRUE(testing::WriteGguf(contents_, path).ok());
  auto m = Model::Load(path, ModelOptions{.threads = 1});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("blk.1.ffn_gate_exps.weight"), std::string::npos)
      << m.status();
  EXPECT_NE(m.status().message().find("is Q6_K"), std::string::npos) << m.status();
}

TEST_F(StorageTypesTest, UnreadableTypesAreRefusedNamingTheType) {
  // Q4_K (ggml id 12) has 144-byte blocks of 256 weights, Q4_0's size: a
  // Q4_0 output.weight whose type id is patched to 12 is a well-formed file
  // with a type the engine neither computes in nor converts.
  testing::GgufContents::Tensor* out = contents_.FindTensor("output.weight");
  std::vector<float> x(out->ne[0] * out->ne[1]);
  DequantizeRow(out->type, out->bytes.data(), x.data(), x.size());
  out->type = DType::kQ4_0;
  out->bytes.assign(x.size() / 32 * 18, '\0');
  QuantizeRow(DType::kQ4_0, x.data(), out->bytes.data(), x.size());
  const std::string path = dir_.File("q4k.gguf");
  ASSERT_TRUE(testing::WriteGguf(contents_, path).ok());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  // The tensor info: name (u64 length, bytes; "attn_output.weight" also
  // ends in it), n_dims (u32), ne (u64 each), type (u32).
  const std::string name = "output.weight";
  std::string needle(8, '\0');
  needle[0] = static_cast<char>(name.size());
  needle += name;
  const size_t at = bytes.find(needle);
  ASSERT_NE(at, std::string::npos);
  const size_t type_at = at + needle.size() + 4 + 8 * out->ne.size();
  uint32_t type;
  std::memcpy(&type, bytes.data() + type_at, 4);
  ASSERT_EQ(type, 2u);
  type = 12;
  std::memcpy(bytes.data() + type_at, &type, 4);
  {
    std::ofstream o(path, std::ios::binary | std::ios::trunc);
    o.write(bytes.data(), bytes.size());
  }
  auto m = Model::Load(path, ModelOptions{.threads = 1});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("unsupported tensor type Q4_K"), std::string::npos)
      << m.status();
  EXPECT_NE(m.status().message().find("Q6_K"), std::string::npos) << "names what it reads";
}

}  // namespace
}  // namespace st
