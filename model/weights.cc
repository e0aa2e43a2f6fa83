#include "model/weights.h"

#include <cstring>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/packed_matrix.h"
#include "kernels/quant.h"
#include "model/tensor_names.h"

namespace st {
namespace {

absl::StatusOr<const GgufTensorInfo*> Find(const GgufFile& f, const std::string& name) {
  const GgufTensorInfo* t = f.FindTensor(name);
  if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat("missing tensor '", name, "'"));
  return t;
}

absl::StatusOr<MatrixRef> Matrix(const GgufFile& f, const std::string& name) {
  ST_ASSIGN_OR_RETURN(const GgufTensorInfo* t, Find(f, name));
  return TensorMatrix(f, *t);
}

absl::StatusOr<std::vector<float>> Vector(const GgufFile& f, const std::string& name) {
  ST_ASSIGN_OR_RETURN(const GgufTensorInfo* t, Find(f, name));
  std::vector<float> out(t->n_elements());
  DequantizeRow(t->type, f.TensorData(*t), out.data(), out.size());
  return out;
}

}  // namespace

MatrixRef TensorMatrix(const GgufFile& file, const GgufTensorInfo& info) {
  size_t rows = 1;
  for (size_t i = 1; i < info.ne.size(); ++i) rows *= info.ne[i];
  return MatrixRef{info.type, file.TensorData(info), rows, static_cast<size_t>(info.ne[0])};
}

absl::StatusOr<DenseWeights> DenseWeights::Load(const GgufFile& f, const ModelConfig& c) {
  namespace tn = tensor_names;
  DenseWeights w;
  ST_ASSIGN_OR_RETURN(w.token_embd, Matrix(f, tn::kTokenEmbd));
  ST_ASSIGN_OR_RETURN(w.output_norm, Vector(f, tn::kOutputNorm));
  if (c.tied_output) {
    w.output = w.token_embd;
  } else {
    ST_ASSIGN_OR_RETURN(w.output, Matrix(f, tn::kOutput));
  }
  w.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& lw = w.layers[l];
    ST_ASSIGN_OR_RETURN(lw.attn_norm, Vector(f, tn::Blk(l, tn::kAttnNorm)));
    ST_ASSIGN_OR_RETURN(lw.wq, Matrix(f, tn::Blk(l, tn::kAttnQ)));
    ST_ASSIGN_OR_RETURN(lw.wk, Matrix(f, tn::Blk(l, tn::kAttnK)));
    ST_ASSIGN_OR_RETURN(lw.wv, Matrix(f, tn::Blk(l, tn::kAttnV)));
    ST_ASSIGN_OR_RETURN(lw.wo, Matrix(f, tn::Blk(l, tn::kAttnOut)));
    ST_ASSIGN_OR_RETURN(lw.ffn_norm, Vector(f, tn::Blk(l, tn::kFfnNorm)));
    ST_ASSIGN_OR_RETURN(lw.router, Matrix(f, tn::Blk(l, tn::kRouter)));
  }
  for (const GgufTensorInfo& t : f.tensors()) {
    if (t.name.find("_exps.") == std::string::npos) w.dense_bytes += t.n_bytes;
  }
  return w;
}

std::vector<MatrixRef*> DenseWeights::HotMatrices() {
  std::vector<MatrixRef*> hot = {&output};
  for (LayerWeights& l : layers) {
    for (MatrixRef* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.router}) hot.push_back(m);
  }
  return hot;
}

absl::Status DenseWeights::CopyToArena(const std::vector<MatrixRef*>& hot,
                                       const std::function<void(MatrixRef*, char*)>& place) {
  if (hot.empty()) return absl::OkStatus();
  constexpr size_t kAlign = 64;
  auto bytes_of = [](const MatrixRef* m) {
    return (m->rows * m->row_bytes() + kAlign - 1) / kAlign * kAlign;
  };
  size_t total = 0;
  for (const MatrixRef* m : hot) total += bytes_of(m);
  ST_ASSIGN_OR_RETURN(std::unique_ptr<HugePageArena> a, HugePageArena::Create(total));
  size_t off = 0;
  for (MatrixRef* m : hot) {
    place(m, a->data() + off);
    off += bytes_of(m);
  }
  arenas.push_back(std::move(a));
  return absl::OkStatus();
}

absl::Status DenseWeights::MoveToHugePages() {
  // Packed matrices already live in an arena and are read only there.
  std::vector<MatrixRef*> hot = HotMatrices();
  std::erase_if(hot, [](const MatrixRef* m) { return m->packed != nullptr; });
  return CopyToArena(hot, [this](MatrixRef* m, char* dst) {
    std::memcpy(dst, m->data, m->rows * m->row_bytes());
    const bool tied = m == &output && token_embd.data == output.data;
    m->data = dst;
    if (tied) token_embd.data = dst;
  });
}

absl::Status DenseWeights::PackForKernels(const GgufFile& file) {
  std::vector<MatrixRef*> hot = HotMatrices();
  std::erase_if(hot, [](const MatrixRef* m) { return !CanPack(m->type, m->rows, m->cols); });
  return CopyToArena(hot, [&](MatrixRef* m, char* dst) {
    PackRows(m->type, m->data, m->rows, m->cols, dst);
    file.ReleasePages(m->data, m->rows * m->row_bytes());
    const bool tied = m == &output && token_embd.data == output.data;
    m->packed = dst;
    if (tied) token_embd.packed = dst;
    packed_bytes += m->rows * m->row_bytes();
  });
}

absl::StatusOr<std::vector<ExpertStacks>> LoadExpertStacks(const GgufFile& f,
                                                           const ModelConfig& c) {
  namespace tn = tensor_names;
  std::vector<ExpertStacks> out(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    ExpertStacks& s = out[l];
    s.n_experts = c.n_experts;
    s.down_transposed = c.down_transposed;
    ST_ASSIGN_OR_RETURN(s.gate, Matrix(f, tn::Blk(l, tn::kGateExps)));
    ST_ASSIGN_OR_RETURN(s.up, Matrix(f, tn::Blk(l, tn::kUpExps)));
    ST_ASSIGN_OR_RETURN(s.down, Matrix(f, tn::Blk(l, tn::kDownExps)));
  }
  return out;
}

}  // namespace st
