// Dense (non-expert) weights of a SmallThinker model, as views into the
// memory-mapped GGUF (or, after MoveToHugePages, copies in a huge-page
// arena). Norm gains are converted to f32 copies at load.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/huge_page_arena.h"
#include "kernels/matmul.h"
#include "model/config.h"
#include "model/gguf.h"

namespace st {

struct LayerWeights {
  std::vector<float> attn_norm;  // [d_model]
  MatrixRef wq;                  // [q_dim, d_model]
  MatrixRef wk;                  // [kv_dim, d_model]
  MatrixRef wv;                  // [kv_dim, d_model]
  MatrixRef wo;                  // [d_model, q_dim]
  std::vector<float> ffn_norm;   // [d_model]
  MatrixRef router;              // [n_experts, d_model]
};

// Expert matrices of one layer as stored in the GGUF: n_experts stacked
// [rows, cols] matrices per projection.
struct ExpertStacks {
  MatrixRef gate;  // per expert [d_expert, d_model]; stacked: rows = n_experts * d_expert
  MatrixRef up;    // same
  MatrixRef down;  // per expert [d_model, d_expert], or [d_expert, d_model] if transposed
  int n_experts = 0;
  bool down_transposed = false;

  // Expert e's matrix within a stack.
  // A packed stack (16-row layout; rows per expert a multiple of 16) gives
  // packed slices at the same offsets.
  static MatrixRef Slice(const MatrixRef& stack, int e, int n_experts) {
    const size_t rows = stack.rows / n_experts;
    const size_t offset = e * rows * stack.row_bytes();
    auto at = [offset](const void* p) {
      return p == nullptr ? nullptr : static_cast<const char*>(p) + offset;
    };
    return MatrixRef{.type = stack.type,
                     .data = at(stack.data),
                     .rows = rows,
                     .cols = stack.cols,
                     .packed = at(stack.packed),
                     .storage = stack.storage,
                     .packed_kquant = at(stack.packed_kquant)};
  }
};

// Thread-safe (read-only after Load). Views stay valid while `file` lives.
struct DenseWeights {
  // [vocab_size, d_model]; in a storage-only format and not tied (or tied
  // and computed as stored), left in the file with `storage` set
  // (Forward::Embed dequantizes its rows).
  MatrixRef token_embd;
  std::vector<float> output_norm;  // [d_model]
  MatrixRef output;                // [vocab_size, d_model]; == token_embd when tied
  std::vector<LayerWeights> layers;

  // dense_as_stored (ModelOptions::dense_kquant_as_stored): matrices in Q4_K
  // or Q6_K with whole 256-weight rows stay in the file, `storage` set,
  // and are computed as stored (kernels/matmul.h MatMul); otherwise, like
  // every other storage-only format, they are converted to Q8_0 here.
  static absl::StatusOr<DenseWeights> Load(const GgufFile& file, const ModelConfig& config,
                                           bool dense_as_stored = false);

  // Copies the matrices read every decode step (attention, router, LM head;
  // not the embedding table unless it is the tied LM head) into one
  // HugePageArena and repoints them there. Values are unchanged. Matrices
  // already packed (PackForKernels first) are left alone.
  absl::Status MoveToHugePages();

  // Re-lays the Q4_0/Q8_0 matrices read every decode step (attention,
  // router, LM head) in the 16-row layout of kernels/packed_matrix.h, in one
  // HugePageArena, and sets their `packed` (MatMul then uses the packed
  // kernels). `data` keeps pointing at `file` (the one loaded from), whose
  // pages of those matrices are released so the process holds each once.
  // A no-op where the CPU has no packed kernel. A matrix converted at load
  // (a storage-only type such as Q6_K) keeps only its packed copy: its
  // `data` becomes null (the packed kernels never read it), unless it is
  // the tied embedding table.
  absl::Status PackForKernels(const GgufFile& file);

  // Arenas made by MoveToHugePages / PackForKernels, and the Q8_0 copies of
  // tensors stored in a storage-only type (kernels/ggml_storage.h) made by
  // Load; shared by copies.
  std::vector<std::shared_ptr<const HugePageArena>> arenas;

  // Bytes of the dense tensors (everything but experts) in the file.
  size_t dense_bytes = 0;
  // Of those, bytes already resident as packed copies (PackForKernels).
  size_t packed_bytes = 0;

 private:
  // The matrices read every decode step: LM head, then per layer q, k, v, o
  // and router.
  std::vector<MatrixRef*> HotMatrices();
  // One HugePageArena holding every matrix of `hot` (64-byte aligned);
  // place(m, dst) fills dst and repoints m.
  absl::Status CopyToArena(const std::vector<MatrixRef*>& hot,
                           const std::function<void(MatrixRef*, char*)>& place);
};

// The expert stacks of every layer (views into the file).
absl::StatusOr<std::vector<ExpertStacks>> LoadExpertStacks(const GgufFile& file,
                                                           const ModelConfig& config);

// A 1-D or 2-D tensor as a matrix view ([ne1, ne0]); for 3-D stacks
// rows = ne1 * ne2. A tensor in a storage-only format keeps its bytes
// (`storage` set, `type` Q8_0): only the K-quant kernels read it
// unconverted (Q4_K, Q6_K: kernels/kquant_dot.h).
MatrixRef TensorMatrix(const GgufFile& file, const GgufTensorInfo& info);

}  // namespace st
