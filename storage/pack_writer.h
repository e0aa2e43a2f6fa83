// Converts a GGUF's routed experts into an expert pack (storage/expert_pack.h).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace st {

struct PackWriterOptions {
  std::string gguf_path;
  std::string out_path;  // empty: DefaultPackPath(gguf_path)
  bool progress = true;  // progress bar on stderr (MB/s, ETA)
  int threads = 0;       // records built in parallel (transpose + re-quantize); 0 = all cores
  // A K-quant file's experts as Q8_0 records (down transposed: sparse ReGLU
  // down) even when they could be stored as the file holds them
  // (kPackFlagAsStored, the default: 0.57x the bytes on a Q4_K_M).
  bool kquant_as_q8 = false;
  // For tests: replaces pwrite(2) (same contract: bytes written or -1 with
  // errno set). Short writes are continued.
  using Fn = std::function<ssize_t(int fd, const void* buf, size_t n, off_t offset)>;
  Fn pwrite_fn;
};

struct PackWriteResult {
  std::string path;
  uint64_t bytes = 0;
  uint64_t records = 0;
  bool down_requantized = false;
  bool as_stored = false;  // kPackFlagAsStored: the file's K-quant bytes
};

// Writes the pack under "<out>.tmp.<pid>": records first, then the header
// and checksum table at offset 0, fsync, rename to <out>, fsync of the
// directory. Any failure removes the temporary file; a killed process leaves
// only the .tmp file, never a file at <out>. Errors name the path:
// ENOSPC/EDQUOT -> RESOURCE_EXHAUSTED, other I/O errors -> INTERNAL, a GGUF
// that is not a SmallThinker model or mixes expert types -> INVALID_ARGUMENT.
// Peak RAM: a batch of 2 records per thread, each with two down matrices in
// f32 when down is transposed (~19 MB per record on the 21B).
// Thread-compatible (no shared state).
absl::StatusOr<PackWriteResult> WritePack(const PackWriterOptions& options);

}  // namespace st
