#include "storage/pack_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/kquant_dot.h"
#include "kernels/packed_kquant.h"
#include "kernels/packed_matrix.h"
#include "common/output_path.h"
#include "common/progress.h"
#include "common/status_macros.h"
#include "common/temp_file_guard.h"
#include "common/thread_pool.h"
#include "kernels/quant.h"
#include "kernels/split_rows.h"
#include "model/config.h"
#include "model/gguf.h"
#include "model/weights.h"
#include "storage/expert_pack.h"

namespace st {
namespace {

absl::Status IoError(const std::string& op, const std::string& path, int err) {
  std::string msg = absl::StrCat(path, ": ", op, ": ", std::strerror(err));
  if (err == ENOSPC || err == EDQUOT) {
    return absl::ResourceExhaustedError(absl::StrCat(msg, " (disk full? free space or use --out)"));
  }
  return absl::InternalError(msg);
}

// Owns the temporary file until Commit(); removes it otherwise.
class TempFile {
 public:
  TempFile(std::string final_path, PackWriterOptions::Fn pwrite_fn)
      : final_(std::move(final_path)),
        tmp_(TempPathFor(final_)),
        guard_(tmp_),
        pwrite_(std::move(pwrite_fn)) {}
  ~TempFile() {
    if (fd_ >= 0) close(fd_);
    if (!committed_) unlink(tmp_.c_str());
  }
  absl::Status Open() {
    RemoveStaleTempFiles(final_);  // an interrupted convert's (logged)
    fd_ = open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return IoError("create", tmp_, errno);
    lock_ = std::make_unique<TempFileLock>(tmp_);
    return absl::OkStatus();
  }
  absl::Status Write(const void* data, size_t n, uint64_t offset) {
    auto* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = pwrite_ ? pwrite_(fd_, p, n, static_cast<off_t>(offset))
                          : pwrite(fd_, p, n, static_cast<off_t>(offset));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return IoError(absl::StrCat("write at offset ", offset), tmp_, errno);
      if (w == 0) return IoError(absl::StrCat("write at offset ", offset), tmp_, ENOSPC);
      p += w;
      n -= static_cast<size_t>(w);
      offset += static_cast<uint64_t>(w);
    }
    return absl::OkStatus();
  }
  absl::Status Commit() {
    if (fsync(fd_) != 0) return IoError("fsync", tmp_, errno);
    if (close(fd_) != 0) {
      fd_ = -1;
      return IoError("close", tmp_, errno);
    }
    fd_ = -1;
    if (rename(tmp_.c_str(), final_.c_str()) != 0) {
      return IoError(absl::StrCat("rename to ", final_), tmp_, errno);
    }
    committed_ = true;
    const size_t slash = final_.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : final_.substr(0, slash + 1);
    int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      fsync(dfd);  // best effort: the rename is durable once the directory is
      close(dfd);
    }
    return absl::OkStatus();
  }

 private:
  std::string final_, tmp_;
  TempFileGuard guard_;  // removes tmp_ if a signal ends the process
  std::unique_ptr<TempFileLock> lock_;  // while it is written (RemoveStaleTempFiles)
  PackWriterOptions::Fn pwrite_;
  int fd_ = -1;
  bool committed_ = false;
};

// Copies `rows` rows of `row_bytes` from a matrix view into dst.
void CopyMatrix(const MatrixRef& m, char* dst) { std::memcpy(dst, m.data, m.rows * m.row_bytes()); }

// dst <- transpose of m ([rows, cols] -> [cols, rows]) in m.type, through f32
// (m in a storage-only format: dequantized from it, written as Q8_0).
void TransposeMatrix(const MatrixRef& m, char* dst, std::vector<float>& in,
                     std::vector<float>& out) {
  in.resize(m.rows * m.cols);
  out.resize(m.rows * m.cols);
  for (size_t r = 0; r < m.rows; ++r) DequantizeMatrixRow(m, r, &in[r * m.cols]);
  for (size_t r = 0; r < m.rows; ++r) {
    for (size_t c = 0; c < m.cols; ++c) out[c * m.rows + r] = in[r * m.cols + c];
  }
  const size_t out_row_bytes = RowBytes(m.type, m.rows);
  for (size_t c = 0; c < m.cols; ++c) {
    QuantizeRow(m.type, &out[c * m.rows], dst + c * out_row_bytes, m.rows);
  }
}

// m as the kernels' type: an expert in a storage-only format (K-quants,
// Q4_1, ...) converted to Q8_0 in `buffer` (the pack's records are Q8_0
// then: c.expert_type); any other m as it is.
MatrixRef Readable(const MatrixRef& m, std::vector<char>& buffer) {
  if (m.storage == nullptr) return m;
  buffer.resize(m.kernel_bytes());
  ConvertRowsToQ8_0(*m.storage, m.data, m.rows, m.cols, buffer.data());
  return MatrixRef{.type = DType::kQ8_0, .data = buffer.data(), .rows = m.rows, .cols = m.cols};
}

// Whether every expert matrix is in a format kernels/kquant_dot.h computes
// in, in whole 256-weight rows, with down as upstream stores it: the pack
// can then hold the file's bytes (kPackFlagAsStored).
bool StorableAsStored(const ModelConfig& c, const std::vector<ExpertStacks>& stacks) {
  if (c.d_model % 256 != 0 || c.d_expert % 256 != 0) return false;
  for (const ExpertStacks& s : stacks) {
    if (s.down_transposed) return false;
    for (const MatrixRef* m : {&s.gate, &s.up, &s.down}) {
      if (m->storage == nullptr || !KQuantDotSupported(m->storage->ggml_type)) return false;
    }
  }
  return true;
}

// Records built at once: two per thread.
int RecordsPerBatch(const ThreadPool& pool) { return 2 * pool.num_threads(); }

// Writes the records of pack `h` under `file`: record r is build(r, i,
// buffer) (the buffer zeroed, h.record_size bytes, 4 KiB-aligned; i its
// place in the batch, below RecordsPerBatch), built in parallel a batch at
// a time and written in order, then the header.
absl::Status WriteRecords(const PackWriterOptions& o, const PackHeader& h, TempFile& file,
                          ThreadPool& pool,
                          const std::function<void(uint64_t, int, char*)>& build) {
  std::vector<uint64_t> checksums(h.record_count);
  const int batch = RecordsPerBatch(pool);
  std::unique_ptr<char, decltype(&std::free)> records(
      static_cast<char*>(std::aligned_alloc(kPackAlignment, h.record_size * batch)), &std::free);
  if (records == nullptr) return absl::ResourceExhaustedError("convert: cannot allocate record buffers");
  ProgressBar bar("convert", h.file_size, o.progress);
  for (uint64_t first = 0; first < h.record_count; first += batch) {
    const int n = static_cast<int>(std::min<uint64_t>(batch, h.record_count - first));
    pool.ParallelFor(n, [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) {
        char* rec = records.get() + i * h.record_size;
        std::memset(rec, 0, h.record_size);
        build(first + i, static_cast<int>(i), rec);
        checksums[first + i] = RecordChecksum(rec, h.record_size);
      }
    });
    for (int i = 0; i < n; ++i) {
      const uint64_t r = first + i;
      ST_RETURN_IF_ERROR(file.Write(records.get() + i * h.record_size, h.record_size,
                                    h.records_offset + r * h.record_size));
      bar.Add(h.record_size);
    }
  }
  // The header goes last: until the final bytes land, the file has no magic.
  const std::string prefix = SerializePackPrefix(h, checksums);
  ST_RETURN_IF_ERROR(file.Write(prefix.data(), prefix.size(), 0));
  ST_RETURN_IF_ERROR(file.Commit());
  bar.Add(prefix.size());
  bar.Finish();
  return absl::OkStatus();
}

absl::StatusOr<PackWriteResult> WriteAsStored(const PackWriterOptions& o, const GgufFile& gguf,
                                              const ModelConfig& c,
                                              const std::vector<ExpertStacks>& stacks) {
  std::vector<uint32_t> types;
  for (const ExpertStacks& s : stacks) {
    for (const MatrixRef* m : {&s.gate, &s.up, &s.down}) types.push_back(m->storage->ggml_type);
  }
  ST_ASSIGN_OR_RETURN(PackHeader h,
                      PackHeader::MakeAsStored(GgufFingerprint(gguf), c.n_layers, c.n_experts,
                                               c.d_model, c.d_expert, std::move(types),
                                               /*kquant_packed=*/PackedKQuantKernelsHere()));
  PackWriteResult result{.path = o.out_path.empty() ? DefaultPackPath(o.gguf_path) : o.out_path,
                         .bytes = h.file_size,
                         .records = h.record_count,
                         .as_stored = true};
  // Written under a temporary name beside it, then renamed into place.
  ST_ASSIGN_OR_RETURN(const std::string target, ReplaceableOutputPath(result.path));
  TempFile file(target, o.pwrite_fn);
  ST_RETURN_IF_ERROR(file.Open());
  ThreadPool pool(o.threads);
  ST_RETURN_IF_ERROR(WriteRecords(o, h, file, pool, [&](uint64_t r, int, char* rec) {
    const int l = static_cast<int>(r / c.n_experts), e = static_cast<int>(r % c.n_experts);
    const ExpertStacks& s = stacks[l];
    const MatrixRef* ms[3] = {&s.gate, &s.up, &s.down};
    for (int m = 0; m < 3; ++m) {
      const MatrixRef x = ExpertStacks::Slice(*ms[m], e, c.n_experts);
      // Gate and down as RecordMatrix reads them: packed where it says so.
      if (h.RecordMatrix(rec, l, m).packed_kquant != nullptr) {
        PackKQuantRows(x.storage->ggml_type, x.data, x.rows, x.cols, rec + h.matrix_offset[m]);
      } else {
        std::memcpy(rec + h.matrix_offset[m], x.data, h.MatrixBytes(l, m));
      }
    }
  }));
  return result;
}

}  // namespace

absl::StatusOr<PackWriteResult> WritePack(const PackWriterOptions& o) {
  ST_ASSIGN_OR_RETURN(auto gguf, GgufFile::Open(o.gguf_path));
  ST_ASSIGN_OR_RETURN(ModelConfig c, LoadModelConfig(*gguf));
  ST_ASSIGN_OR_RETURN(std::vector<ExpertStacks> stacks, LoadExpertStacks(*gguf, c));
  for (int l = 0; l < c.n_layers; ++l) {
    for (const MatrixRef* m : {&stacks[l].gate, &stacks[l].up, &stacks[l].down}) {
      if (m->type != c.expert_type) {
        return absl::InvalidArgumentError(absl::StrCat(
            o.gguf_path, ": layer ", l, " mixes expert types (", std::string(DTypeName(m->type)), " and ",
            std::string(DTypeName(c.expert_type)), "); the pack format needs one type for all experts"));
      }
    }
  }
  if (!o.kquant_as_q8 && StorableAsStored(c, stacks)) return WriteAsStored(o, *gguf, c, stacks);
  const bool requant = !c.down_transposed && IsBlockQuantized(c.expert_type);
  // The gate is always computed whole: store it ready for the packed kernels.
  const bool gate_packed = (c.expert_type == DType::kQ4_0 || c.expert_type == DType::kQ8_0) &&
                           c.d_expert % kPackRows == 0;
  // Up rows are dotted one active row at a time: Q4_0 in the split layout.
  const bool up_split = c.expert_type == DType::kQ4_0;
  ST_ASSIGN_OR_RETURN(PackHeader h,
                      PackHeader::Make(c.expert_type, GgufFingerprint(*gguf), c.n_layers,
                                       c.n_experts, c.d_model, c.d_expert,
                                       (requant ? kPackFlagDownRequantized : 0u) |
                                           (gate_packed ? kPackFlagGatePacked : 0u) |
                                           (up_split ? kPackFlagUpSplit : 0u)));
  PackWriteResult result{.path = o.out_path.empty() ? DefaultPackPath(o.gguf_path) : o.out_path,
                         .bytes = h.file_size,
                         .records = h.record_count,
                         .down_requantized = requant};
  // Written under a temporary name beside it, then renamed into place.
  ST_ASSIGN_OR_RETURN(const std::string target, ReplaceableOutputPath(result.path));
  TempFile file(target, o.pwrite_fn);
  ST_RETURN_IF_ERROR(file.Open());

  // Each record is built in its own buffer: transposing and re-quantizing
  // down is the CPU-heavy part.
  ThreadPool pool(o.threads);
  const int slots = RecordsPerBatch(pool);
  std::vector<std::vector<float>> in(slots), out(slots);
  std::vector<std::vector<char>> converted(slots);
  ST_RETURN_IF_ERROR(WriteRecords(o, h, file, pool, [&](uint64_t r, int i, char* rec) {
    const int l = static_cast<int>(r / c.n_experts), e = static_cast<int>(r % c.n_experts);
    const ExpertStacks& s = stacks[l];
    const MatrixRef gate = Readable(ExpertStacks::Slice(s.gate, e, c.n_experts), converted[i]);
    if (gate_packed) {
      PackRows(gate.type, gate.data, gate.rows, gate.cols, rec);
    } else {
      CopyMatrix(gate, rec);
    }
    const MatrixRef up = Readable(ExpertStacks::Slice(s.up, e, c.n_experts), converted[i]);
    if (up_split) {
      for (size_t row = 0; row < up.rows; ++row) {
        SplitQ4_0Row(up.row(row), up.cols, rec + h.matrix_stride + row * up.row_bytes());
      }
    } else {
      CopyMatrix(up, rec + h.matrix_stride);
    }
    const MatrixRef down = ExpertStacks::Slice(s.down, e, c.n_experts);
    char* down_dst = rec + 2 * h.matrix_stride;
    if (s.down_transposed) {
      CopyMatrix(Readable(down, converted[i]), down_dst);  // already [d_expert, d_model]
    } else {
      // [d_model, d_expert] -> [d_expert, d_model], dequantized from the
      // file's own format (a storage-only one too: one Q8_0 rounding).
      TransposeMatrix(down, down_dst, in[i], out[i]);
    }
  }));
  return result;
}

}  // namespace st
