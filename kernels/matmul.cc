#include "kernels/matmul.h"

#include <algorithm>

#include "glog/logging.h"
#include "kernels/fp16.h"
#include "kernels/kquant_dot.h"
#include "kernels/packed_kquant.h"
#include "kernels/packed_matrix.h"

namespace st {
namespace {

// Rows per ParallelFor grain: keeps per-task overhead small against the
// cost of one row (>= 768 multiply-adds at our shapes). 768- and 1536-row
// matrices split evenly over 2 or 3 threads.
constexpr size_t kRowGrain = 16;

// Bytes of weight rows per tile: a tile stays in L2 while every chunk of
// vectors passes over it, so the matrix streams from memory once however
// many vectors there are. Large enough that DotRowsMulti's once-per-call
// preparation of the vectors (AVX-512) is amortized over >= 40 rows at our
// quantized shapes.
constexpr size_t kTileBytes = 64 << 10;

// Packed groups per ParallelFor chunk at most (about 110 KB of Q4_0 weights
// at 1536 columns, ~5 us): a thread owns a contiguous run of chunks, so small
// chunks cost no stream restarts, and the last chunk of a matrix, which the
// other thread may wait for, stays short. With the pool's default 4 chunks
// per thread the LM head (9496 groups) ended with one thread waiting about
// 0.4 ms for the other's last 15 MB chunk.
constexpr size_t kGroupsPerChunk = 8;

size_t ChunksPerThread(size_t units, const ThreadPool& pool) {
  const size_t threads = static_cast<size_t>(pool.num_threads());
  return std::max<size_t>(ThreadPool::kChunksPerThread,
                          (units + threads * kGroupsPerChunk - 1) / (threads * kGroupsPerChunk));
}

// Vectors per DotRowsMulti call: their prepared blocks (36 KB at cols 1536 on
// AVX-512, 13 KB as Q8_0) stay in L1/L2 while the tile's rows pass over them.
constexpr size_t kVecChunk = 8;

// Rows [begin, end) of w against every vector of x. A K-quant w (`storage`
// set, computed as stored: model/weights.h) against x's Q8_0 blocks.
void MatMulRange(const MatrixRef& w, const Activations& x, size_t begin, size_t end, float* y) {
  const size_t n_vecs = x.n_vecs();
  VecRef vecs[kVecChunk];
  const BlockQ8_0* q8[kVecChunk];
  const size_t tile_rows = std::max<size_t>(1, kTileBytes / w.row_bytes());
  for (size_t r = begin; r < end; r += tile_rows) {
    const size_t r_end = std::min(end, r + tile_rows);
    for (size_t i = 0; i < n_vecs; i += kVecChunk) {
      const size_t count = std::min(kVecChunk, n_vecs - i);
      if (w.storage != nullptr) {
        CHECK(x.has_q8()) << "a K-quant matrix needs Q8_0 activations";
        DCHECK(KQuantDotSupported(w.storage->ggml_type));
        for (size_t k = 0; k < count; ++k) q8[k] = x.q8(i + k);
        DotRowsKQuant(w.storage->ggml_type, w.row(r), w.row_bytes(), nullptr, r_end - r, q8,
                      count, w.cols, y + i * w.rows + r, w.rows);
        continue;
      }
      for (size_t k = 0; k < count; ++k) vecs[k] = x.vec(i + k);
      DotRowsMulti(w.type, w.row(r), w.row_bytes(), r_end - r, vecs, count, y + i * w.rows + r,
                   w.rows);
    }
  }
}

// Groups of 16 packed rows per tile (about kTileBytes of weights), so that a
// tile stays in L2 while every chunk of vectors passes over it.
void PackedMatMulRange(const MatrixRef& w, const Activations& x, size_t g_begin, size_t g_end,
                       float* y) {
  const size_t tile = std::max<size_t>(1, kTileBytes / PackedGroupBytes(w.type, w.cols));
  for (size_t g = g_begin; g < g_end; g += tile) {
    PackedMatMulGroups(w.type, w.packed, w.cols, x, g, std::min(g_end, g + tile), y, w.rows);
  }
}

// The same over a Q4_K matrix in kernels/packed_kquant.h's layout.
void PackedKQuantMatMulRange(const MatrixRef& w, const Activations& x, size_t g_begin,
                             size_t g_end, float* y) {
  const uint32_t type = w.storage->ggml_type;
  const size_t tile = std::max<size_t>(1, kTileBytes / PackedKQuantGroupBytes(type, w.cols));
  for (size_t g = g_begin; g < g_end; g += tile) {
    PackedKQuantMatMulGroups(type, w.packed_kquant, w.cols, x, 0, x.n_vecs(), g,
                             std::min(g_end, g + tile), y, w.rows);
  }
}

// Whether w is computed 16 rows at a time: packed (Q4_0/Q8_0) or packed
// Q4_K, against Q8_0 activations.
bool InGroups(const MatrixRef& w, const Activations& x) {
  return (w.packed != nullptr || w.packed_kquant != nullptr) && x.has_q8();
}

void GroupRange(const MatrixRef& w, const Activations& x, size_t g_begin, size_t g_end, float* y) {
  if (w.packed != nullptr) {
    PackedMatMulRange(w, x, g_begin, g_end, y);
  } else {
    PackedKQuantMatMulRange(w, x, g_begin, g_end, y);
  }
}

void PackedMatMul(const MatrixRef& w, const Activations& x, float* y, ThreadPool* pool) {
  const size_t groups = w.rows / kPackRows;
  if (pool == nullptr) {
    GroupRange(w, x, 0, groups, y);
    return;
  }
  pool->ParallelFor(
      groups, [&](size_t begin, size_t end) { GroupRange(w, x, begin, end, y); },
      /*grain=*/1, ChunksPerThread(groups, *pool));
}

// Weight bytes of one MatMulMany work unit in row layout, about those of a
// 16-row Q4_0 group at our widths (13.5 KiB at 1536 columns): the pool
// splits units, not bytes, so every job's units must weigh about the same.
// (A run of 16 F32 router rows, 96 KiB at 1536 columns, had counted as one
// unit: the thread that got the router ran ~170 KiB longer than the other
// in every layer's q/k/v/router fork-join.)
constexpr size_t kRowUnitBytes = 16 << 10;

// Rows per row-layout unit: kRowGrain, or fewer for rows over 1 KiB (at
// 1536 columns: F32 2, F16 5, Q8_0 10, Q4_0 16).
size_t RowsPerUnit(const MatrixRef& w) {
  return std::clamp<size_t>(kRowUnitBytes / std::max<size_t>(1, w.row_bytes()), 1, kRowGrain);
}

// Work units of one MatMulMany job: 16-row packed groups, or row-layout
// rows in RowsPerUnit runs (the last one short).
size_t Units(const MatMulJob& j) {
  if (InGroups(*j.w, *j.x)) return j.w->rows / kPackRows;
  const size_t rows = RowsPerUnit(*j.w);
  return (j.w->rows + rows - 1) / rows;
}

void JobUnits(const MatMulJob& j, size_t begin, size_t end) {
  if (InGroups(*j.w, *j.x)) {
    GroupRange(*j.w, *j.x, begin, end, j.y);
  } else {
    const size_t rows = RowsPerUnit(*j.w);
    MatMulRange(*j.w, *j.x, begin * rows, std::min(end * rows, j.w->rows), j.y);
  }
}

}  // namespace

void MatMulMany(std::span<const MatMulJob> jobs, ThreadPool* pool) {
  std::vector<size_t> first(jobs.size() + 1, 0);  // first unit of each job
  for (size_t i = 0; i < jobs.size(); ++i) {
    DCHECK_EQ(jobs[i].x->cols(), jobs[i].w->cols);
    first[i + 1] = first[i] + Units(jobs[i]);
  }
  auto range = [&](size_t begin, size_t end) {
    for (size_t i = 0; i < jobs.size(); ++i) {
      const size_t b = std::max(begin, first[i]), e = std::min(end, first[i + 1]);
      if (b < e) JobUnits(jobs[i], b - first[i], e - first[i]);
    }
  };
  if (pool == nullptr) {
    range(0, first.back());
  } else {
    pool->ParallelFor(first.back(), range, /*grain=*/1, ChunksPerThread(first.back(), *pool));
  }
}

void Activations::Prepare(const float* x, size_t n_vecs, size_t cols, bool need_q8) {
  if (!need_q8) {
    x_ = x;
    n_vecs_ = n_vecs;
    cols_ = cols;
    has_q8_ = false;
    return;
  }
  Allocate(x, n_vecs, cols);
  for (size_t i = 0; i < n_vecs; ++i) QuantizeBlocks(i, 0, cols / kQK);
}

void Activations::Allocate(const float* x, size_t n_vecs, size_t cols) {
  CHECK_EQ(cols % kQK, 0u) << "Activations::Allocate: Q8_0 needs cols % 32 == 0";
  x_ = x;
  n_vecs_ = n_vecs;
  cols_ = cols;
  has_q8_ = true;
  const size_t nb = n_vecs * (cols / kQK);
  q8_.resize(nb);
  q8_scale_.resize(nb);
  q8_sum_.resize(nb);
}

void Activations::QuantizeBlocks(size_t i, size_t b_begin, size_t b_end) {
  const size_t b = i * (cols_ / kQK) + b_begin;
  QuantizeQ8_0Blocks(x_ + i * cols_ + b_begin * kQK, (b_end - b_begin) * kQK, q8_.data() + b,
                     q8_scale_.data() + b, q8_sum_.data() + b);
}

void Activations::CopyVec(size_t i, const Activations& src, size_t j) {
  DCHECK_EQ(src.cols_, cols_);
  const size_t nb = cols_ / kQK;
  std::copy_n(src.q8_.data() + j * nb, nb, q8_.data() + i * nb);
  std::copy_n(src.q8_scale_.data() + j * nb, nb, q8_scale_.data() + i * nb);
  std::copy_n(src.q8_sum_.data() + j * nb, nb, q8_sum_.data() + i * nb);
}

void MatVecRows(const MatrixRef& w, const VecRef& x, size_t row_begin, size_t row_end,
                float* y) {
  DCHECK_EQ(x.n, w.cols);
  if (row_end <= row_begin) return;
  DotRows(w.type, w.row(row_begin), w.row_bytes(), row_end - row_begin, x, y);
}

void MatMul(const MatrixRef& w, const Activations& x, float* y, ThreadPool* pool) {
  DCHECK_EQ(x.cols(), w.cols);
  if (InGroups(w, x)) {
    PackedMatMul(w, x, y, pool);
    return;
  }
  if (pool == nullptr) {
    MatMulRange(w, x, 0, w.rows, y);
    return;
  }
  pool->ParallelFor(
      w.rows, [&](size_t begin, size_t end) { MatMulRange(w, x, begin, end, y); }, kRowGrain);
}

namespace scalar {

void MatMul(const MatrixRef& w, const Activations& x, float* y) {
  for (size_t i = 0; i < x.n_vecs(); ++i) {
    const VecRef v = x.vec(i);
    for (size_t r = 0; r < w.rows; ++r) y[i * w.rows + r] = scalar::DotRow(w.type, w.row(r), v);
  }
}

}  // namespace scalar
}  // namespace st
