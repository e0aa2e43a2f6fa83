// Test helpers for storage/ (header-only, used by *_test.cc): aligned record
// buffers, the record a pack should hold computed straight from the GGUF, and
// corrupted copies.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/dtype.h"
#include "kernels/ggml_storage.h"
#include "kernels/packed_kquant.h"
#include "kernels/packed_matrix.h"
#include "kernels/quant.h"
#include "kernels/split_rows.h"
#include "model/gguf.h"
#include "storage/expert_pack.h"

namespace st::testing {

// A 4 KiB-aligned, zeroed buffer.
struct AlignedBuffer {
  explicit AlignedBuffer(size_t n)
      : data(static_cast<char*>(std::aligned_alloc(kPackAlignment, AlignUp(n, kPackAlignment))),
             &std::free) {
    std::memset(data.get(), 0, AlignUp(n, kPackAlignment));
  }
  char* get() const { return data.get(); }
  std::unique_ptr<char, decltype(&std::free)> data;
};

inline std::vector<float> DequantizeMatrix(DType type, const uint8_t* p, size_t rows, size_t cols) {
  std::vector<float> out(rows * cols);
  for (size_t r = 0; r < rows; ++r) DequantizeRow(type, p + r * RowBytes(type, cols), &out[r * cols], cols);
  return out;
}

// Expert `expert` of stack t ([rows, cols] each) in the type the kernels
// compute it in: its bytes in the file, or their Q8_0 conversion when t is
// in a storage-only format (K-quants, ...).
inline std::vector<uint8_t> ExpertBytes(const GgufFile& gguf, const GgufTensorInfo& t, int expert,
                                        size_t rows, size_t cols) {
  const size_t in_row = t.storage != nullptr
                            ? cols / t.storage->block_elems * t.storage->block_bytes
                            : RowBytes(t.type, cols);
  const uint8_t* src = gguf.TensorData(t) + expert * rows * in_row;
  if (t.storage == nullptr) return std::vector<uint8_t>(src, src + rows * in_row);
  std::vector<uint8_t> out(rows * RowBytes(DType::kQ8_0, cols));
  ConvertRowsToQ8_0(*t.storage, src, rows, cols, out.data());
  return out;
}

// Checks one record against the GGUF it was made from (as stored: above):
// gate (re-laid when
// kPackFlagGatePacked) and up (re-laid when kPackFlagUpSplit) byte-equal to
// the GGUF's expert slices (their Q8_0 conversion for storage-only
// formats), down^T equal to the transpose of the GGUF's
// down (within one quantization step of the pack's block for Q4_0/Q8_0, exact
// otherwise), padding zero. Returns "" or the first difference.
// An as-stored record (kPackFlagAsStored): each matrix byte-equal to the
// GGUF's expert slice, at its offset, zero padding after it.
inline std::string CompareAsStoredRecord(const GgufFile& gguf, const PackHeader& h, int layer,
                                         int expert, const char* record) {
  const char* names[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
  for (int m = 0; m < 3; ++m) {
    const GgufTensorInfo* t = gguf.FindTensor(absl::StrCat("blk.", layer, ".", names[m], ".weight"));
    if (t == nullptr || t->storage == nullptr) return absl::StrCat("no stored ", names[m]);
    if (t->storage->ggml_type != h.stored_types[3 * layer + m]) return "type differs";
    const uint64_t n = h.MatrixBytes(layer, m);
    if (n * t->ne[2] != t->n_bytes) return absl::StrCat(names[m], " size differs");
    const uint8_t* want = gguf.TensorData(*t) + expert * n;
    std::vector<uint8_t> packed;
    // A gate or down of the packable shape: in the 16-row layout.
    const size_t rows = m == 2 ? h.d_model : h.d_expert, cols = m == 2 ? h.d_expert : h.d_model;
    if (m != 1 && (h.flags & kPackFlagKQuantPacked) != 0 &&
        PackableKQuantShape(t->storage->ggml_type, rows, cols)) {
      packed.resize(n);
      PackKQuantRows(t->storage->ggml_type, want, rows, cols, packed.data());
      want = packed.data();
    }
    if (std::memcmp(record + h.matrix_offset[m], want, n) != 0) {
      return absl::StrCat(names[m], " differs at layer ", layer, " expert ", expert);
    }
    const uint64_t end = m < 2 ? h.matrix_offset[m + 1] : h.record_size;
    for (uint64_t i = h.matrix_offset[m] + n; i < end; ++i) {
      if (record[i] != 0) return absl::StrCat("nonzero padding at byte ", i);
    }
  }
  return "";
}

inline std::string CompareRecord(const GgufFile& gguf, const PackHeader& h, int layer, int expert,
                                 const char* record) {
  if (h.as_stored()) return CompareAsStoredRecord(gguf, h, layer, expert, record);
  const std::string blk = absl::StrCat("blk.", layer, ".");
  const size_t n = h.matrix_bytes;
  for (int m = 0; m < 2; ++m) {
    const GgufTensorInfo* t = gguf.FindTensor(blk + (m == 0 ? "ffn_gate_exps.weight" : "ffn_up_exps.weight"));
    if (t == nullptr) return "missing gate/up tensor";
    const std::vector<uint8_t> held = ExpertBytes(gguf, *t, expert, h.d_expert, h.d_model);
    if (held.size() != n) return "gate/up size differs from the pack's matrix";
    const uint8_t* want = held.data();
    std::vector<uint8_t> packed;
    if (m == 0 && (h.flags & kPackFlagGatePacked) != 0) {
      packed.resize(n);
      PackRows(h.expert_type, want, h.d_expert, h.d_model, packed.data());
      want = packed.data();
    }
    if (m == 1 && (h.flags & kPackFlagUpSplit) != 0) {
      packed.resize(n);
      const size_t rb = h.row_bytes();
      for (size_t r = 0; r < h.d_expert; ++r) {
        SplitQ4_0Row(want + r * rb, h.d_model, packed.data() + r * rb);
      }
      want = packed.data();
    }
    if (std::memcmp(record + m * h.matrix_stride, want, n) != 0) {
      return absl::StrCat(m == 0 ? "gate" : "up", " differs at layer ", layer, " expert ", expert);
    }
  }
  const GgufTensorInfo* t = gguf.FindTensor(blk + "ffn_down_exps.weight");
  if (t == nullptr) return "missing down tensor";
  // PowerInfer layout (told apart by shape, as ModelConfig does)
  const bool transposed = t->ne[0] == h.d_model && h.d_model != h.d_expert;
  const size_t dm = h.d_model, de = h.d_expert;
  // The file's values: down^T is made from them (a storage-only format
  // dequantized straight from the file, one Q8_0 rounding); a transposed
  // down is copied as the kernels take it (its Q8_0 conversion).
  const size_t rows = transposed ? de : dm, cols = transposed ? dm : de;
  std::vector<float> src(rows * cols);
  if (t->storage != nullptr && !transposed) {
    const uint8_t* p = gguf.TensorData(*t) + expert * rows * (cols / t->storage->block_elems *
                                                              t->storage->block_bytes);
    t->storage->dequantize(p, src.data(), src.size());
  } else {
    src = DequantizeMatrix(h.expert_type, ExpertBytes(gguf, *t, expert, rows, cols).data(), rows,
                           cols);
  }
  std::vector<float> got = DequantizeMatrix(
      h.expert_type, reinterpret_cast<const uint8_t*>(record + 2 * h.matrix_stride), de, dm);
  const bool exact = transposed || !IsBlockQuantized(h.expert_type);
  const float levels = h.expert_type == DType::kQ4_0 ? 8.0f : 127.0f;
  for (size_t j = 0; j < de; ++j) {
    for (size_t b = 0; b < dm; b += BlockElems(h.expert_type)) {
      const size_t be = BlockElems(h.expert_type);
      float amax = 0;
      for (size_t i = b; i < b + be; ++i) {
        amax = std::max(amax, std::fabs(transposed ? src[j * dm + i] : src[i * de + j]));
      }
      const float tol = exact ? 0.0f : amax / levels * 1.05f + 1e-6f;
      for (size_t i = b; i < b + be; ++i) {
        const float want = transposed ? src[j * dm + i] : src[i * de + j];
        if (!(std::fabs(got[j * dm + i] - want) <= tol)) {
          return absl::StrCat("down^T[", j, "][", i, "] = ", got[j * dm + i], ", want ", want,
                              " +- ", tol, " at layer ", layer, " expert ", expert);
        }
      }
    }
  }
  for (int m = 0; m < 3; ++m) {
    for (size_t i = m * h.matrix_stride + n; i < (m + 1) * h.matrix_stride; ++i) {
      if (record[i] != 0) return absl::StrCat("nonzero padding at byte ", i);
    }
  }
  return "";
}

// Writes a copy of `path` to `out` with the byte at `offset` XOR-ed with 0x5a
// and the file cut to `size` bytes (all of it if size is -1).
inline void CopyModified(const std::string& path, const std::string& out, int64_t flip_offset,
                         int64_t size = -1) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (flip_offset >= 0) bytes[flip_offset] ^= 0x5a;
  if (size >= 0) bytes.resize(size);
  std::ofstream(out, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace st::testing
