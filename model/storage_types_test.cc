// Files as llama.cpp's quantizer makes them: the LM head of a Q4_0 (Q4_1,
// Q5_0, Q5_1) model is Q6_K unless told otherwise, and K-quant mixes put
// Q4_K, Q6_K, Q5_0 ... in every tensor. Such a tensor, dense or expert,
// computes as its dequantized values quantized to Q8_0 (so a model whose
// file holds that Q8_0 matrix gives the same logits bit for bit), except
// Q4_K and Q6_K experts, and with dense_kquant_as_stored dense ones, which
// are computed as stored; types the engine cannot read at all are refused
// naming the type.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/fp16.h"
#include "kernels/ggml_storage.h"
#include "kernels/packed_kquant.h"
#include "kernels/packed_matrix.h"
#include "kernels/quant.h"
#include "model/config.h"
#include "model/gguf.h"
#include "model/local_expert_executor.h"
#include "model/mapped_repack.h"
#include "model/weights.h"
#include "model/model.h"
#include "model/session.h"
#include "model/synth.h"
#include "model/synth_quant.h"
#include "tests/testutil/testutil.h"

namespace st {
namespace {

// x[0, n) in a ggml storage format (rows of `row_len`), by the synthetic
// models' quantizer (model/synth_quant.h).
std::string Quantize(uint32_t ggml_type, const float* x, size_t n, size_t row_len) {
  const size_t row_bytes = SynthRowBytes(ggml_type, row_len);
  std::string out(n / row_len * row_bytes, '\0');
  for (size_t r = 0; r < n / row_len; ++r) {
    SynthQuantizeRow(ggml_type, x + r * row_len,
                     reinterpret_cast<uint8_t*>(out.data()) + r * row_bytes, row_len);
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
  std::vector<float> Logits(const std::string& path, ModelOptions options = {.threads = 1}) {
    auto m = Model::Load(path, options);
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

// Writes the model with each named tensor in its ggml storage format and
// with the same values in Q8_0 (the format's dequantization, then Q8_0) and
// expects the same logits from both, bit for bit, for every `options`;
// returns the storage-format file's path.
std::string ExpectReadsAsQ8_0(StorageTypesTest* t, testing::GgufContents contents,
                              const std::vector<std::pair<std::string, uint32_t>>& tensors,
                              const std::string& dir_file,
                              const std::vector<ModelOptions>& options = {{.threads = 1}}) {
  testing::GgufContents q8 = contents;
  for (const auto& [name, ggml_type] : tensors) {
    testing::GgufContents::Tensor* w = contents.FindTensor(name);
    EXPECT_NE(w, nullptr) << name;
    if (w == nullptr) return "";
    const StorageFormat* f = FindStorageFormat(ggml_type);
    EXPECT_NE(f, nullptr);
    size_t n = 1;
    for (uint64_t d : w->ne) n *= d;
    const size_t cols = w->ne[0], rows = n / cols;
    std::vector<float> x(n);
    DequantizeRow(w->type, w->bytes.data(), x.data(), n);
    // The file as llama.cpp writes it.
    w->storage_type = ggml_type;
    w->bytes = Quantize(ggml_type, x.data(), n, cols);
    // The same values as a Q8_0 tensor.
    testing::GgufContents::Tensor* w8 = q8.FindTensor(name);
    w8->type = DType::kQ8_0;
    w8->bytes.assign(rows * RowBytes(DType::kQ8_0, cols), '\0');
    ConvertRowsToQ8_0(*f, w->bytes.data(), rows, cols, w8->bytes.data());
  }
  const std::string storage_path = dir_file + "-storage.gguf";
  EXPECT_TRUE(testing::WriteGguf(contents, storage_path).ok());
  auto file = GgufFile::Open(storage_path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return "";
  for (const auto& [name, ggml_type] : tensors) {
    const GgufTensorInfo* info = (*file)->FindTensor(name);
    EXPECT_NE(info, nullptr);
    EXPECT_NE(info->storage, nullptr);
    EXPECT_EQ(info->ggml_type, ggml_type);
  }
  const std::string q8_path = dir_file + "-q8.gguf";
  EXPECT_TRUE(testing::WriteGguf(q8, q8_path).ok());
  for (const ModelOptions& o : options) {
    SCOPED_TRACE(::testing::Message() << "repack " << o.repack << " threads " << o.threads);
    const std::vector<float> a = t->Logits(storage_path, o), b = t->Logits(q8_path, o);
    EXPECT_EQ(a.size(), b.size());
    EXPECT_FALSE(a.empty());
    if (a.size() == b.size()) {
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
    }
  }
  return storage_path;
}

// With native K-quants off (--kquant-as-q8): a Q6_K tensor converted to
// Q8_0 at load.
std::string ExpectQ6_KReadsAsQ8_0(StorageTypesTest* t, testing::GgufContents contents,
                                  const std::string& name, const std::string& dir_file) {
  return ExpectReadsAsQ8_0(t, std::move(contents), {{name, kGgmlQ6_K}}, dir_file,
                           {{.threads = 1, .native_kquant = false}});
}

// max |a - b| < 5% of max |b| (Q6_K keeps values to ~1%).
::testing::AssertionResult NearLogits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || a.empty()) return ::testing::AssertionFailure() << "sizes differ";
  double err = 0, mag = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, static_cast<double>(std::fabs(a[i] - b[i])));
    mag = std::max(mag, static_cast<double>(std::fabs(b[i])));
  }
  if (err < 0.05 * mag) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max |diff| " << err << " of max |logit| " << mag;
}

// The expert tensors of the 4-layer tiny preset as a K-quant mix stores
// them: Q4_K gate and up (layer 3's gate Q6_K), Q5_0 down (d_expert 64 is
// no whole 256-weight row).
std::vector<std::pair<std::string, uint32_t>> KQuantExpertTensors() {
  std::vector<std::pair<std::string, uint32_t>> tensors;
  for (int l = 0; l < 4; ++l) {
    const std::string b = absl::StrCat("blk.", l, ".");
    tensors.push_back({b + "ffn_gate_exps.weight", l == 3 ? kGgmlQ6_K : kGgmlQ4_K});
    tensors.push_back({b + "ffn_up_exps.weight", kGgmlQ4_K});
    tensors.push_back({b + "ffn_down_exps.weight", kGgmlQ5_0});
  }
  return tensors;
}

TEST_F(StorageTypesTest, Q6_KLmHeadReadsAsItsValuesInQ8_0) {
  const std::string q6_path =
      ExpectQ6_KReadsAsQ8_0(this, contents_, "output.weight", dir_.File("head"));
  ASSERT_FALSE(q6_path.empty());
  // Near the original head's logits.
  EXPECT_TRUE(NearLogits(Logits(q6_path, {.threads = 1, .native_kquant = false}),
                         Logits(dir_.File("q8.gguf"))));
  // Packed, the converted head is held once: its row-layout copy is gone.
  auto m = Model::Load(q6_path, ModelOptions{.threads = 1, .native_kquant = false});
  ASSERT_TRUE(m.ok()) << m.status();
  const MatrixRef& head = (*m)->weights().output;
  if (head.packed != nullptr) {
    EXPECT_EQ(head.data, nullptr);
  }
  // --huge-pages --no-repack: the converted head is in 2 MiB pages already
  // and is not copied again (the other hot matrices are, into one arena).
  auto h = Model::Load(q6_path, ModelOptions{.threads = 1, .huge_pages = true, .repack = false,
                                             .native_kquant = false});
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
  auto m = Model::Load(q6_path, ModelOptions{.threads = 1, .native_kquant = false});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_NE((*m)->weights().token_embd.data, nullptr) << "the embedding reads rows";
}

// With dense_kquant_as_stored a Q6_K LM head (tied or not) is computed as
// stored: no Q8_0 copy, it stays in the file mapping (counted as dense
// bytes there), its logits are the same for any thread count and batch
// size and near the converted head's (each weight exact rather than
// rounded once more).
TEST_F(StorageTypesTest, Q6_KLmHeadComputedAsStored) {
  for (bool tied : {false, true}) {
    SCOPED_TRACE(tied ? "tied" : "output.weight");
    testing::GgufContents contents = contents_;
    if (tied) contents.EraseTensor("output.weight");
    const std::string name = tied ? "token_embd.weight" : "output.weight";
    const std::string path =
        ExpectQ6_KReadsAsQ8_0(this, contents, name, dir_.File(tied ? "tied-native" : "native-head"));
    ASSERT_FALSE(path.empty());
    auto m = Model::Load(path, ModelOptions{.threads = 1, .dense_kquant_as_stored = true});
    ASSERT_TRUE(m.ok()) << m.status();
    const DenseWeights& w = (*m)->weights();
    EXPECT_EQ(w.output.storage, FindStorageFormat(kGgmlQ6_K));
    EXPECT_EQ(w.output.packed, nullptr);
    EXPECT_TRUE((*m)->file().Contains(w.output.data)) << "read from the mapping";
    if (tied) {
      EXPECT_EQ(w.token_embd.data, w.output.data);
    }
    EXPECT_TRUE(w.arenas.size() <= 1u) << "no conversion arena beside the packed one";
    uint64_t dense = 0;
    for (const GgufTensorInfo& t : (*m)->file().tensors()) {
      if (t.name.find("_exps.") == std::string::npos) dense += t.n_bytes;
    }
    EXPECT_EQ(w.dense_bytes, dense);
    const std::vector<float> one = Logits(path, {.threads = 1, .dense_kquant_as_stored = true});
    for (const ModelOptions& o :
         {ModelOptions{.threads = 2, .dense_kquant_as_stored = true},
          ModelOptions{.threads = 2, .max_batch = 1, .dense_kquant_as_stored = true}}) {
      const std::vector<float> other = Logits(path, o);
      ASSERT_EQ(other.size(), one.size());
      EXPECT_EQ(std::memcmp(other.data(), one.data(), one.size() * sizeof(float)), 0);
    }
    const std::vector<float> converted =
        Logits(path, {.threads = 1, .dense_kquant_as_stored = false});  // --kquant-dense-as-q8
    EXPECT_TRUE(NearLogits(one, converted));
    EXPECT_NE(std::memcmp(one.data(), converted.data(), one.size() * sizeof(float)), 0);
    // --huge-pages copies the other hot matrices, not this one (a copy
    // would hold it twice: its file pages stay).
    auto h = Model::Load(path, {.threads = 1, .huge_pages = true, .dense_kquant_as_stored = true});
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_TRUE((*h)->file().Contains((*h)->weights().output.data));
    // With native K-quants off (--kquant-as-q8) every K-quant is converted,
    // the dense ones too.
    auto q8 = Model::Load(path, {.threads = 1, .native_kquant = false});
    ASSERT_TRUE(q8.ok()) << q8.status();
    EXPECT_EQ((*q8)->weights().output.storage, nullptr);
    EXPECT_EQ((*q8)->weights().output.type, DType::kQ8_0);
  }
}

// With dense_kquant_as_stored, Q4_K q/k/v matrices are computed from a
// copy in the 16-row packed layout (kernels/packed_kquant.h; their file
// pages released): the same logits for any thread count and batch size,
// within float rounding of the row kernels' (--no-repack).
TEST_F(StorageTypesTest, Q4_KAttentionPackedWhenComputedAsStored) {
  std::vector<std::pair<std::string, uint32_t>> tensors;
  for (int l = 0; l < 4; ++l) {
    // (attn_output's rows are q_dim: no whole 256-weight rows in tiny.)
    for (const char* t : {"attn_q", "attn_k", "attn_v"}) {
      tensors.push_back({absl::StrCat("blk.", l, ".", t, ".weight"), kGgmlQ4_K});
    }
  }
  const std::string path = ExpectReadsAsQ8_0(this, contents_, tensors, dir_.File("attn-q4k"),
                                             {{.threads = 1, .native_kquant = false}});
  ASSERT_FALSE(path.empty());
  const ModelOptions stored{.threads = 1, .dense_kquant_as_stored = true};
  auto m = Model::Load(path, stored);
  ASSERT_TRUE(m.ok()) << m.status();
  const DenseWeights& w = (*m)->weights();
  size_t packed = 0;
  for (const LayerWeights& lw : w.layers) {
    for (const MatrixRef* x : {&lw.wq, &lw.wk, &lw.wv}) {
      EXPECT_EQ(x->storage, FindStorageFormat(kGgmlQ4_K));
      EXPECT_TRUE((*m)->file().Contains(x->data)) << "rows stay in the mapping";
      if (CanPackKQuant(kGgmlQ4_K, x->rows, x->cols)) {
        EXPECT_NE(x->packed_kquant, nullptr);
        packed += x->rows * x->row_bytes();
      }
    }
  }
  if (!CanPackKQuant(kGgmlQ4_K, w.layers[0].wq.rows, w.layers[0].wq.cols)) {
    GTEST_SKIP() << "no packed K-quant kernel on this CPU";
  }
  EXPECT_GT(packed, 0u);
  EXPECT_GE(w.packed_bytes, packed) << "counted as resident for the memory plan";
  const std::vector<float> one = Logits(path, stored);
  for (const ModelOptions& o : {ModelOptions{.threads = 2, .dense_kquant_as_stored = true},
                                ModelOptions{.threads = 2, .max_batch = 1,
                                             .dense_kquant_as_stored = true}}) {
    const std::vector<float> other = Logits(path, o);
    ASSERT_EQ(other.size(), one.size());
    EXPECT_EQ(std::memcmp(other.data(), one.data(), one.size() * sizeof(float)), 0);
  }
  const std::vector<float> rows =
      Logits(path, {.threads = 1, .repack = false, .dense_kquant_as_stored = true});
  ASSERT_EQ(rows.size(), one.size());
  double err = 0, mag = 0;
  for (size_t i = 0; i < one.size(); ++i) {
    err = std::max(err, static_cast<double>(std::fabs(one[i] - rows[i])));
    mag = std::max(mag, static_cast<double>(std::fabs(rows[i])));
  }
  EXPECT_LT(err, 1e-3 * mag) << "packed and row kernels differ by float rounding only";
}

// An embedding in a K-quant format that is not the LM head stays in the
// file and its rows are dequantized as they are looked up: the logits of a
// file holding those exact values in F32, bit for bit, and no Q8_0 copy.
TEST_F(StorageTypesTest, KQuantEmbeddingRowsAreReadFromTheFile) {
  testing::GgufContents q4k = contents_, f32 = contents_;
  testing::GgufContents::Tensor* e = q4k.FindTensor("token_embd.weight");
  ASSERT_NE(e, nullptr);
  const size_t cols = e->ne[0], n = cols * e->ne[1];
  std::vector<float> x(n);
  DequantizeRow(e->type, e->bytes.data(), x.data(), n);
  e->storage_type = kGgmlQ4_K;
  e->bytes = Quantize(kGgmlQ4_K, x.data(), n, cols);
  std::vector<float> exact(n);
  DequantizeQ4_K(reinterpret_cast<const uint8_t*>(e->bytes.data()), exact.data(), n);
  testing::GgufContents::Tensor* e32 = f32.FindTensor("token_embd.weight");
  e32->type = DType::kF32;
  e32->bytes.assign(reinterpret_cast<const char*>(exact.data()), n * sizeof(float));
  const std::string q4k_path = dir_.File("embd-q4k.gguf"), f32_path = dir_.File("embd-f32.gguf");
  ASSERT_TRUE(testing::WriteGguf(q4k, q4k_path).ok());
  ASSERT_TRUE(testing::WriteGguf(f32, f32_path).ok());
  const std::vector<float> a = Logits(q4k_path), b = Logits(f32_path);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  auto m = Model::Load(q4k_path, ModelOptions{.threads = 1});
  ASSERT_TRUE(m.ok()) << m.status();
  const DenseWeights& w = (*m)->weights();
  EXPECT_EQ(w.token_embd.storage, FindStorageFormat(kGgmlQ4_K));
  EXPECT_TRUE((*m)->file().Contains(w.token_embd.data)) << "read from the mapping";
  EXPECT_EQ(w.dense_bytes, (*m)->file().FindTensor("token_embd.weight")->n_bytes +
                               [&] {
                                 uint64_t rest = 0;
                                 for (const GgufTensorInfo& t : (*m)->file().tensors()) {
                                   if (t.name.find("_exps.") == std::string::npos &&
                                       t.name != "token_embd.weight") {
                                     rest += t.n_bytes;
                                   }
                                 }
                                 return rest;
                               }())
      << "the file's embedding bytes count as dense";
}

// Experts as a Q4_K_M file holds them (Q4_K gate and up; down in Q6_K in
// some layers, else Q4_K; rows of 64 fall back to Q5_0 as llama.cpp's do)
// compute as their values in Q8_0: converted on first use, packed (the
// default) or in rows (--no-repack), with one thread or a pool (the
// executor converts whole stacks in parallel).
TEST_F(StorageTypesTest, KQuantExpertsReadAsTheirValuesInQ8_0) {
  const testing::GgufContents::Tensor* down = contents_.FindTensor("blk.0.ffn_down_exps.weight");
  ASSERT_NE(down, nullptr);
  ASSERT_EQ(down->ne[0], 64u) << "tiny's d_expert: no whole 256-weight rows";
  const std::vector<std::pair<std::string, uint32_t>> tensors = KQuantExpertTensors();
  // (Native K-quants off: Q4_K and Q6_K experts are converted too.)
  const std::string path = ExpectReadsAsQ8_0(
      this, contents_, tensors, dir_.File("experts"),
      {{.threads = 1, .native_kquant = false},
       {.threads = 2, .native_kquant = false},
       {.threads = 2, .repack = false}});
  ASSERT_FALSE(path.empty());
  auto m = Model::Load(path, ModelOptions{.threads = 1, .native_kquant = false});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->config().expert_type, DType::kQ8_0);

  // Expert by expert, as a worker and the coordinator's own share compute
  // them (slices of the stacks, each converted on its own): the same
  // numbers as the Q8_0 file's experts, and the conversions are counted
  // and dropped like packed copies.
  auto kq = GgufFile::Open(path);
  auto q8 = GgufFile::Open(dir_.File("experts-q8.gguf"));
  ASSERT_TRUE(kq.ok() && q8.ok());
  const ModelConfig& c = (*m)->config();
  auto kq_stacks = LoadExpertStacks(**kq, c);
  auto q8_stacks = LoadExpertStacks(**q8, c);
  ASSERT_TRUE(kq_stacks.ok() && q8_stacks.ok());
  std::vector<float> x(3 * c.d_model), y_kq(x.size()), y_q8(x.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
  const size_t copies_before = PackedCopyBytes();
  for (int l = 0; l < c.n_layers; ++l) {
    for (int e = 0; e < c.n_experts; ++e) {
      SCOPED_TRACE(::testing::Message() << "layer " << l << " expert " << e);
      auto run = [&](const ExpertStacks& s, float* y) {
        LocalExpertExecutor::ComputeExpert(ExpertStacks::Slice(s.gate, e, s.n_experts),
                                           ExpertStacks::Slice(s.up, e, s.n_experts),
                                           ExpertStacks::Slice(s.down, e, s.n_experts),
                                           s.down_transposed, x.data(), 3, y, nullptr);
      };
      run((*kq_stacks)[l], y_kq.data());
      run((*q8_stacks)[l], y_q8.data());
      ASSERT_EQ(std::memcmp(y_kq.data(), y_q8.data(), x.size() * sizeof(float)), 0);
    }
  }
  EXPECT_GT(PackedCopyBytes(), copies_before);
  size_t dropped = 0;
  for (const ExpertStacks& s : *kq_stacks) {
    for (int e = 0; e < c.n_experts; ++e) {
      for (const MatrixRef* m : {&s.gate, &s.up, &s.down}) {
        const MatrixRef slice = ExpertStacks::Slice(*m, e, s.n_experts);
        const size_t bytes = DropPackedCopy(slice);
        EXPECT_EQ(bytes, slice.rows * RowBytes(DType::kQ8_0, slice.cols));
        dropped += bytes;
      }
    }
  }
  EXPECT_GT(dropped, 0u);
}

// Q4_K and Q6_K experts computed as stored (kernels/kquant_dot.h) beside a
// Q5_0 down converted to Q8_0: the same logits for any thread count and
// batch size, near (not equal to) the Q8_0 file's, whose weights were
// rounded once more; the golden test (q4_k_m_sigmoid) checks the numbers
// themselves against the NumPy reference.
TEST_F(StorageTypesTest, KQuantExpertsComputedAsStored) {
  if (!CanPack(DType::kQ8_0, 64, 256)) {
    // The Q5_0 downs would stay in rows, which the phases do not read: the
    // whole expert is converted, as the .repack = false case below.
    GTEST_SKIP() << "no packed kernels on this CPU: K-quant experts are converted to Q8_0";
  }
  const std::vector<std::pair<std::string, uint32_t>> tensors = KQuantExpertTensors();
  const std::string path = ExpectReadsAsQ8_0(this, contents_, tensors, dir_.File("native"),
                                             {{.threads = 1, .native_kquant = false}});
  ASSERT_FALSE(path.empty());
  const size_t copies_before = PackedCopyBytes();
  const std::vector<float> one = Logits(path, {.threads = 1});
  ASSERT_FALSE(one.empty());
  for (const ModelOptions& o : {ModelOptions{.threads = 2}, ModelOptions{.threads = 2, .max_batch = 1}}) {
    SCOPED_TRACE(::testing::Message() << "threads " << o.threads << " max_batch " << o.max_batch);
    const std::vector<float> other = Logits(path, o);
    ASSERT_EQ(other.size(), one.size());
    EXPECT_EQ(std::memcmp(other.data(), one.data(), one.size() * sizeof(float)), 0);
  }
  const std::vector<float> q8 = Logits(dir_.File("native-q8.gguf"), {.threads = 1});
  ASSERT_EQ(q8.size(), one.size());
  // Without packing the Q5_0 downs stay in rows, which the phases do not
  // read: the whole expert is converted, as the Q8_0 file's.
  const std::vector<float> rows = Logits(path, {.threads = 2, .repack = false});
  const std::vector<float> q8_rows = Logits(dir_.File("native-q8.gguf"), {.threads = 2, .repack = false});
  ASSERT_EQ(rows.size(), q8_rows.size());
  EXPECT_EQ(std::memcmp(rows.data(), q8_rows.data(), q8_rows.size() * sizeof(float)), 0);
  double diff = 0, norm = 0;
  for (size_t i = 0; i < one.size(); ++i) {
    diff += (one[i] - q8[i]) * (one[i] - q8[i]);
    norm += q8[i] * q8[i];
  }
  const double rel = std::sqrt(diff / norm);
  // (7.9% here: one rounding of the weights moves this tiny model's router
  // near its ties; a wrong kernel is off by ~100%.)
  EXPECT_GT(rel, 0.0) << "the Q4_K/Q6_K experts were converted to Q8_0";
  EXPECT_LT(rel, 0.5);
  // Only the Q5_0 downs were converted, and the K-quant gates (computed whole)
  // packed into the 16-row layout at their own size (the models above are
  // gone, so their copies too; this one's are made as it runs).
  auto m = Model::Load(path, ModelOptions{.threads = 1});
  ASSERT_TRUE(m.ok()) << m.status();
  Session session(**m, 64);
  ASSERT_TRUE(session.Evaluate({72, 101}, false).ok());
  const ModelConfig& c = (*m)->config();
  const size_t q5_0_downs =
      static_cast<size_t>(c.n_layers) * c.n_experts * c.d_model * RowBytes(DType::kQ8_0, c.d_expert);
  // (layers 0-2's gates Q4_K, layer 3's Q6_K)
  const size_t kquant_gates =
      CanPackKQuant(kGgmlQ4_K, c.d_expert, c.d_model)
          ? static_cast<size_t>(c.n_experts) * c.d_expert * (c.d_model / 256) *
                ((c.n_layers - 1) * kQ4_KBlockBytes + kQ6_KBlockBytes)
          : 0;
  EXPECT_EQ(PackedCopyBytes() - copies_before, q5_0_downs + kquant_gates);
}

// A PowerInfer-layout (transposed) down in a K-quant format: read in rows,
// converted to Q8_0 rows (ConvertedFromMapping), the numbers of the same
// transposed down in Q8_0.
TEST_F(StorageTypesTest, KQuantTransposedDownReadsAsItsValuesInQ8_0) {
  testing::GgufContents c = contents_;
  std::vector<std::pair<std::string, uint32_t>> tensors;
  for (int l = 0; l < 4; ++l) {
    const std::string name = absl::StrCat("blk.", l, ".ffn_down_exps.weight");
    testing::GgufContents::Tensor* t = c.FindTensor(name);
    ASSERT_NE(t, nullptr);
    const size_t ff = t->ne[0], d = t->ne[1], e = t->ne[2];  // upstream {d_expert, d_model, E}
    std::vector<float> x(ff * d * e), y(x.size());
    DequantizeRow(t->type, t->bytes.data(), x.data(), x.size());
    for (size_t k = 0; k < e; ++k) {
      for (size_t r = 0; r < d; ++r) {
        for (size_t f = 0; f < ff; ++f) y[k * d * ff + f * d + r] = x[k * d * ff + r * ff + f];
      }
    }
    t->ne = {d, ff, e};
    t->type = DType::kF32;
    t->bytes.assign(reinterpret_cast<const char*>(y.data()), y.size() * sizeof(float));
    tensors.push_back({name, kGgmlQ4_K});
  }
  const std::string path = ExpectReadsAsQ8_0(
      this, c, tensors, dir_.File("tdown"),
      {{.threads = 1}, {.threads = 2}, {.threads = 2, .repack = false}});
  ASSERT_FALSE(path.empty());
  auto m = Model::Load(path, ModelOptions{.threads = 1});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE((*m)->config().down_transposed);
}

// Experts of one computed type only: Q4_1 (Q8_0 once converted) beside
// Q4_0 experts is refused naming both.
TEST_F(StorageTypesTest, ExpertsOfTwoComputedTypesAreRefused) {
  auto spec = SynthPreset("tiny");
  ASSERT_TRUE(spec.ok());
  SynthOptions o{.spec = *spec, .type = DType::kQ4_0, .out_path = dir_.File("q4.gguf"),
                 .seed = 5, .progress = false};
  ASSERT_TRUE(WriteSyntheticModel(o).ok());
  auto c = testing::ReadGguf(o.out_path);
  ASSERT_TRUE(c.ok()) << c.status();
  testing::GgufContents::Tensor* down = c->FindTensor("blk.1.ffn_down_exps.weight");
  ASSERT_NE(down, nullptr);
  // Q4_1 blocks: f16 d, f16 m, 16 nibble bytes (values do not matter here).
  down->storage_type = kGgmlQ4_1;
  down->bytes.assign(down->bytes.size() / 18 * 20, '\0');
  const std::string path = dir_.File("q4_1-down.gguf");
  ASSERT_TRUE(testing::WriteGguf(*c, path).ok());
  auto m = Model::Load(path, ModelOptions{.threads = 1});
  ASSERT_FALSE(m.ok());
  const std::string msg(m.status().message());
  EXPECT_NE(msg.find("blk.1.ffn_down_exps.weight' is Q4_1 (computed as Q8_0)"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("Q4_0"), std::string::npos) << msg;
}

TEST_F(StorageTypesTest, UnreadableTypesAreRefusedNamingTheType) {
  // IQ4_NL (ggml id 20) has 18-byte blocks of 32 weights, Q4_0's size: a
  // Q4_0 output.weight whose type id is patched to 20 is a well-formed file
  // with a type the engine neither computes in nor converts.
  testing::GgufContents::Tensor* out = contents_.FindTensor("output.weight");
  std::vector<float> x(out->ne[0] * out->ne[1]);
  DequantizeRow(out->type, out->bytes.data(), x.data(), x.size());
  out->type = DType::kQ4_0;
  out->bytes.assign(x.size() / 32 * 18, '\0');
  QuantizeRow(DType::kQ4_0, x.data(), out->bytes.data(), x.size());
  const std::string path = dir_.File("iq4_nl.gguf");
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
  type = 20;
  std::memcpy(bytes.data() + type_at, &type, 4);
  {
    std::ofstream o(path, std::ios::binary | std::ios::trunc);
    o.write(bytes.data(), bytes.size());
  }
  auto m = Model::Load(path, ModelOptions{.threads = 1});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("unsupported tensor type IQ4_NL"), std::string::npos)
      << m.status();
  EXPECT_NE(m.status().message().find("Q6_K"), std::string::npos) << "names what it reads";
}

}  // namespace
}  // namespace st
