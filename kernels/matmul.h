// Matrix x vectors products over weight matrices of any supported type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/thread_pool.h"
#include "kernels/dot.h"
#include "kernels/dtype.h"
#include "kernels/ggml_storage.h"
#include "kernels/quant.h"

namespace st {

// A row-major [rows x cols] weight matrix (PyTorch [out, in]; ggml {cols, rows}).
// Non-owning. `packed`, when set, is the same matrix in the 16-row layout of
// kernels/packed_matrix.h (CanPack was true); MatMul then uses it, while
// `data` stays the row-major original for row-wise users, except for a
// matrix converted at load from a storage-only type (model/weights.h
// PackForKernels): its `data` is null once packed, and only the packed
// kernels (Q8_0 activations) may read it.
struct MatrixRef {
  DType type = DType::kF32;
  const void* data = nullptr;
  size_t rows = 0;
  size_t cols = 0;
  const void* packed = nullptr;
  // Q4_0 rows in the split layout of kernels/split_rows.h (the expert
  // pack's up rows): only the sparse up-row paths (ExpertFfn, SparsePhases)
  // read such a matrix; the bytes per row are the same.
  bool split_rows = false;
  // Set: `data` holds the matrix in this ggml storage format
  // (kernels/ggml_storage.h); `type` (Q8_0) is what it becomes once
  // converted (model/mapped_repack.h ConvertedFromMapping). Only Q4_K and
  // Q6_K are computed as stored (kernels/kquant_dot.h: MatMul, and
  // ExpertPhases for experts); only views of GGUF tensors carry it.
  const StorageFormat* storage = nullptr;
  // Q4_K / Q6_K (`storage` set) in the 16-row layout of kernels/packed_kquant.h
  // (an expert's gate or down, model/mapped_repack.h; a dense matrix computed
  // as stored, DenseWeights::PackForKernels): ExpertPhases and MatMul compute
  // it from there. `data`, when set, is the row-major original (the row
  // kernels read that); an expert pack's record has only this.
  const void* packed_kquant = nullptr;

  // Bytes of one row as `data` holds it.
  size_t row_bytes() const {
    return storage != nullptr ? cols / storage->block_elems * storage->block_bytes
                              : RowBytes(type, cols);
  }
  const void* row(size_t r) const {
    return static_cast<const char*>(data) + r * row_bytes();
  }
  // Bytes of the matrix as the kernels hold it: as `data` holds it, or its
  // Q8_0 conversion when `storage` is set.
  size_t kernel_bytes() const { return rows * RowBytes(type, cols); }
};

// y[0, cols) <- row r of m, dequantized from whatever `data` holds (its
// storage format when `storage` is set).
inline void DequantizeMatrixRow(const MatrixRef& m, size_t r, float* y) {
  if (m.storage != nullptr) {
    m.storage->dequantize(static_cast<const uint8_t*>(m.row(r)), y, m.cols);
  } else {
    DequantizeRow(m.type, m.row(r), y, m.cols);
  }
}

// n_vecs input vectors of `cols` floats, plus their Q8_0 quantization when a
// quantized weight type will consume them. Prepared once, used by any number
// of MatMul calls over matrices with the same `cols`.
// Thread-compatible. Does not own `x`; x must outlive the Activations use.
class Activations {
 public:
  // need_q8: quantize each vector to Q8_0 (cols % 32 == 0 required).
  void Prepare(const float* x, size_t n_vecs, size_t cols, bool need_q8);
  // Convenience: need_q8 = IsBlockQuantized(weight_type).
  void PrepareFor(DType weight_type, const float* x, size_t n_vecs, size_t cols) {
    Prepare(x, n_vecs, cols, IsBlockQuantized(weight_type));
  }

  // Sizes the Q8_0 buffers for n_vecs x cols (cols % 32 == 0) without
  // quantizing anything; then QuantizeBlocks and CopyVec fill them, from
  // several threads at once if their blocks are disjoint. Filled this way
  // the blocks are exactly Prepare's (Q8_0 quantizes each block alone).
  void Allocate(const float* x, size_t n_vecs, size_t cols);
  // Quantizes blocks [b_begin, b_end) of vector i from x.
  void QuantizeBlocks(size_t i, size_t b_begin, size_t b_end);
  // Copies the Q8_0 blocks (with scales and sums) of src's vector j, same
  // cols, into vector i: a row gathered without quantizing it again.
  void CopyVec(size_t i, const Activations& src, size_t j);

  size_t n_vecs() const { return n_vecs_; }
  size_t cols() const { return cols_; }
  bool has_q8() const { return has_q8_; }
  VecRef vec(size_t i) const {
    return VecRef{x_ + i * cols_, has_q8_ ? q8_.data() + i * (cols_ / kQK) : nullptr, cols_};
  }
  // With q8: vector i's blocks, their scales as float and the sums of their
  // levels (for the packed kernels), cols / 32 each.
  const BlockQ8_0* q8(size_t i) const { return q8_.data() + i * (cols_ / kQK); }
  const float* q8_scales(size_t i) const { return q8_scale_.data() + i * (cols_ / kQK); }
  const int32_t* q8_sums(size_t i) const { return q8_sum_.data() + i * (cols_ / kQK); }

 private:
  const float* x_ = nullptr;
  size_t n_vecs_ = 0;
  size_t cols_ = 0;
  bool has_q8_ = false;
  std::vector<BlockQ8_0> q8_;
  std::vector<float> q8_scale_;
  std::vector<int32_t> q8_sum_;
};

// y[i * w.rows + r] = DotRow(w.row(r), x.vec(i)) for every vector i and row r
// (with w.packed and q8 activations: the packed kernel's sums, within float
// rounding of DotRow; w in Q4_K / Q6_K as stored: DotRowsKQuant against
// x's Q8_0 blocks, which x must have). x.cols() == w.cols. Rows are split
// across `pool` (may be null: one thread).
void MatMul(const MatrixRef& w, const Activations& x, float* y, ThreadPool* pool);

// One product of MatMulMany: y = x @ w^T as MatMul computes it.
struct MatMulJob {
  const MatrixRef* w;
  const Activations* x;
  float* y;
};

// Every job's MatMul, with the same numbers, in one fork-join: the rows of
// all jobs (16-row units) are split over the pool together. Small matrices
// that are ready at the same time (attention's q, k and v) then cost one
// pool dispatch and one tail instead of one each.
void MatMulMany(std::span<const MatMulJob> jobs, ThreadPool* pool);

// Same for rows [row_begin, row_end) of a single vector: y[r - row_begin].
// (Not for a K-quant matrix computed as stored: MatMul only.)
void MatVecRows(const MatrixRef& w, const VecRef& x, size_t row_begin, size_t row_end,
                float* y);

namespace scalar {
// Reference twin of st::MatMul: scalar::DotRow on one thread (a K-quant
// matrix's twin is kernels/kquant_dot.h scalar::DotRowKQuant).
void MatMul(const MatrixRef& w, const Activations& x, float* y);
}  // namespace scalar

}  // namespace st
