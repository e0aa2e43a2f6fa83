#include "model/weights.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "kernels/kquant_dot.h"
#include "kernels/packed_kquant.h"
#include "kernels/packed_matrix.h"
#include "kernels/quant.h"
#include "model/tensor_names.h"
#include "common/units.h"
#include "glog/logging.h"

namespace st {
namespace {

absl::StatusOr<const GgufTensorInfo*> Find(const GgufFile& f, const std::string& name) {
  const GgufTensorInfo* t = f.FindTensor(name);
  if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat("missing tensor '", name, "'"));
  return t;
}

// An expert stack as the file holds it: in a storage-only format it keeps
// `storage` set, and is converted on first use (model/mapped_repack.h).
absl::StatusOr<MatrixRef> Matrix(const GgufFile& f, const std::string& name) {
  ST_ASSIGN_OR_RETURN(const GgufTensorInfo* t, Find(f, name));
  return TensorMatrix(f, *t);
}

// What the load converted (one log line for all of them), and what it
// kept in the file to compute as stored.
struct Conversions {
  int tensors = 0;
  uint64_t file_bytes = 0, q8_bytes = 0;
  std::set<std::string> types;
  bool only_lm_head = true;
  bool native_kquant = true;
  std::set<const GgufTensorInfo*> kept;
  std::set<std::string> kept_types;
};

// A tensor in a storage-only format (kernels/ggml_storage.h) as Q8_0, row
// by row (dequantized, then quantized as ggml's quantize_row_q8_0_ref
// does), into a 2 MiB-page arena kept in `arenas`; the file's pages of it
// are released. Q8_0 keeps 8 bits per weight where Q6_K had 6.5625 (each
// weight within about half a Q8_0 step of Q6_K's value): the LM head of a Q4_0
// file then reads 1.3x its Q6_K bytes per token.
absl::StatusOr<MatrixRef> ConvertToQ8_0(const GgufFile& f, const GgufTensorInfo& t,
                                        std::vector<std::shared_ptr<const HugePageArena>>& arenas,
                                        Conversions& log) {
  // Rows are whole blocks of the format (the reader checks), and so whole
  // Q8_0 blocks (kernels/ggml_storage.h).
  const MatrixRef src = TensorMatrix(f, t);
  const size_t out_row = RowBytes(DType::kQ8_0, src.cols);
  ST_ASSIGN_OR_RETURN(std::unique_ptr<HugePageArena> arena,
                      HugePageArena::Create(std::max<size_t>(src.rows * out_row, 1)));
  ConvertRowsToQ8_0(*t.storage, src.data, src.rows, src.cols, arena->data());
  f.ReleasePages(src.data, t.n_bytes);
  ++log.tensors;
  log.file_bytes += t.n_bytes;
  log.q8_bytes += src.rows * out_row;
  log.types.insert(std::string(t.type_name()));
  log.only_lm_head = log.only_lm_head && (t.name == tensor_names::kOutput ||
                                          t.name == tensor_names::kTokenEmbd);
  MatrixRef m{DType::kQ8_0, arena->data(), src.rows, src.cols};
  arenas.push_back(std::move(arena));
  return m;
}

// A dense matrix: in place (a Q4_K / Q6_K one too, computed as stored when
// log.native_kquant), or converted when stored in another storage-only
// format.
absl::StatusOr<MatrixRef> DenseMatrix(const GgufFile& f, const std::string& name,
                                      std::vector<std::shared_ptr<const HugePageArena>>& arenas,
                                      Conversions& log) {
  ST_ASSIGN_OR_RETURN(const GgufTensorInfo* t, Find(f, name));
  if (t->storage != nullptr && log.native_kquant && KQuantDotSupported(t->storage->ggml_type) &&
      t->ne[0] % 256 == 0) {
    log.kept.insert(t);
    log.kept_types.insert(std::string(t->type_name()));
    return TensorMatrix(f, *t);
  }
  if (t->storage != nullptr) return ConvertToQ8_0(f, *t, arenas, log);
  return TensorMatrix(f, *t);
}

absl::StatusOr<std::vector<float>> Vector(const GgufFile& f, const std::string& name) {
  ST_ASSIGN_OR_RETURN(const GgufTensorInfo* t, Find(f, name));
  std::vector<float> out(t->n_elements());
  if (t->storage != nullptr) {  // whole blocks: the reader checks ne[0]
    t->storage->dequantize(f.TensorData(*t), out.data(), out.size());
  } else {
    DequantizeRow(t->type, f.TensorData(*t), out.data(), out.size());
  }
  return out;
}

}  // namespace

MatrixRef TensorMatrix(const GgufFile& file, const GgufTensorInfo& info) {
  size_t rows = 1;
  for (size_t i = 1; i < info.ne.size(); ++i) rows *= info.ne[i];
  return MatrixRef{.type = info.type,
                   .data = file.TensorData(info),
                   .rows = rows,
                   .cols = static_cast<size_t>(info.ne[0]),
                   .storage = info.storage};
}

absl::StatusOr<DenseWeights> DenseWeights::Load(const GgufFile& f, const ModelConfig& c,
                                                bool dense_as_stored) {
  namespace tn = tensor_names;
  DenseWeights w;
  Conversions log;
  log.native_kquant = dense_as_stored;
  // The embedding in a storage-only format stays in the file when it is not
  // also the LM head: a lookup dequantizes one row (Forward::Embed), exact
  // and without a resident Q8_0 copy (the 4b's Q4_K table would take 236
  // MiB as Q8_0; offloaded, only the rows in use are resident).
  const GgufTensorInfo* embd = f.FindTensor(tn::kTokenEmbd);
  const bool embd_in_file = embd != nullptr && embd->storage != nullptr && !c.tied_output;
  if (embd_in_file) {
    w.token_embd = TensorMatrix(f, *embd);
  } else {
    ST_ASSIGN_OR_RETURN(w.token_embd, DenseMatrix(f, tn::kTokenEmbd, w.arenas, log));
  }
  ST_ASSIGN_OR_RETURN(w.output_norm, Vector(f, tn::kOutputNorm));
  if (c.tied_output) {
    w.output = w.token_embd;
  } else {
    ST_ASSIGN_OR_RETURN(w.output, DenseMatrix(f, tn::kOutput, w.arenas, log));
  }
  w.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& lw = w.layers[l];
    ST_ASSIGN_OR_RETURN(lw.attn_norm, Vector(f, tn::Blk(l, tn::kAttnNorm)));
    ST_ASSIGN_OR_RETURN(lw.wq, DenseMatrix(f, tn::Blk(l, tn::kAttnQ), w.arenas, log));
    ST_ASSIGN_OR_RETURN(lw.wk, DenseMatrix(f, tn::Blk(l, tn::kAttnK), w.arenas, log));
    ST_ASSIGN_OR_RETURN(lw.wv, DenseMatrix(f, tn::Blk(l, tn::kAttnV), w.arenas, log));
    ST_ASSIGN_OR_RETURN(lw.wo, DenseMatrix(f, tn::Blk(l, tn::kAttnOut), w.arenas, log));
    ST_ASSIGN_OR_RETURN(lw.ffn_norm, Vector(f, tn::Blk(l, tn::kFfnNorm)));
    ST_ASSIGN_OR_RETURN(lw.router, DenseMatrix(f, tn::Blk(l, tn::kRouter), w.arenas, log));
  }
  if (log.tensors > 0) {
    LOG(WARNING) << log.tensors << " dense tensor(s) in " << absl::StrJoin(log.types, ", ")
                 << " converted to Q8_0 at load (" << FormatBytes(log.file_bytes) << " -> "
                 << FormatBytes(log.q8_bytes) << "; the kernels compute in Q4_0 and Q8_0)"
                 << (log.only_lm_head
                         ? "; quantize with --output-tensor-type q8_0 (or q4_0) to skip this"
                         : "");
  }
  if (!log.kept.empty()) {
    LOG(INFO) << log.kept.size() << " dense tensor(s) in " << absl::StrJoin(log.kept_types, ", ")
              << " computed as stored";
  }
  // Converted tensors are resident already (their file pages released).
  for (const GgufTensorInfo& t : f.tensors()) {
    if (t.name.find("_exps.") == std::string::npos &&
        (t.storage == nullptr || (embd_in_file && &t == embd) || log.kept.contains(&t))) {
      w.dense_bytes += t.n_bytes;
    }
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
  // Packed matrices already live in an arena and are read only there; so do
  // matrices converted at load (ConvertToQ8_0), in 2 MiB pages already.
  std::vector<MatrixRef*> hot = HotMatrices();
  auto in_own_arena = [this](const void* p) {
    const char* c = static_cast<const char*>(p);
    return std::any_of(arenas.begin(), arenas.end(), [c](const auto& a) {
      return c >= a->data() && c < a->data() + a->size();
    });
  };
  // A K-quant matrix computed as stored is not copied: packed, it is read
  // only from its packed copy; in rows (no packed kernel, or --no-repack) it
  // stays in the file mapping, which the memory plan counts.
  std::erase_if(hot, [&](const MatrixRef* m) {
    return m->packed != nullptr || m->packed_kquant != nullptr || m->storage != nullptr ||
           in_own_arena(m->data);
  });
  return CopyToArena(hot, [this](MatrixRef* m, char* dst) {
    std::memcpy(dst, m->data, m->rows * m->row_bytes());
    const bool tied = m == &output && token_embd.data == output.data;
    m->data = dst;
    if (tied) token_embd.data = dst;
  });
}

absl::Status DenseWeights::PackForKernels(const GgufFile& file) {
  std::vector<MatrixRef*> hot = HotMatrices();
  // (A K-quant matrix computed as stored is packed below, in its own layout.)
  std::erase_if(hot, [](const MatrixRef* m) {
    return m->storage != nullptr || !CanPack(m->type, m->rows, m->cols);
  });
  std::vector<const void*> unused;  // converted row-layout copies now packed
  ST_RETURN_IF_ERROR(CopyToArena(hot, [&](MatrixRef* m, char* dst) {
    PackRows(m->type, m->data, m->rows, m->cols, dst);
    file.ReleasePages(m->data, m->rows * m->row_bytes());
    const bool tied = m == &output && token_embd.data == output.data;
    m->packed = dst;
    if (tied) token_embd.packed = dst;
    // Of the file's dense bytes (a converted matrix was never counted there).
    if (file.Contains(m->data)) {
      packed_bytes += m->rows * m->row_bytes();
    } else if (!tied) {
      unused.push_back(m->data);
      m->data = nullptr;
    }
  }));
  // Q4_K / Q6_K computed as stored (dense_kquant_as_stored): a copy in the 16-row
  // packed layout of kernels/packed_kquant.h, the same bytes; `data` stays
  // the file's rows (a tied embedding reads them), their pages released.
  std::vector<MatrixRef*> kquant = HotMatrices();
  std::erase_if(kquant, [](const MatrixRef* m) {
    return m->storage == nullptr || m->packed != nullptr || m->data == nullptr ||
           !CanPackKQuant(m->storage->ggml_type, m->rows, m->cols);
  });
  ST_RETURN_IF_ERROR(CopyToArena(kquant, [&](MatrixRef* m, char* dst) {
    PackKQuantRows(m->storage->ggml_type, m->data, m->rows, m->cols, dst);
    file.ReleasePages(m->data, m->rows * m->row_bytes());
    m->packed_kquant = dst;
    if (m == &output && token_embd.data == output.data) token_embd.packed_kquant = dst;
    packed_bytes += m->rows * m->row_bytes();
  }));
  // A converted matrix's row-layout copy (ConvertToQ8_0) is read by no one
  // once packed, unless it is also the embedding table: free it (the 4b's
  // Q6_K LM head would otherwise be held twice, 248 MiB each).
  std::erase_if(arenas, [&](const std::shared_ptr<const HugePageArena>& a) {
    return std::find(unused.begin(), unused.end(), a->data()) != unused.end();
  });
  return absl::OkStatus();
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
