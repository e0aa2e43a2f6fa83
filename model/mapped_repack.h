// Packed copies of expert matrices that live in GGUF file mappings, made on
// first use and shared by everything in the process that computes experts
// through LocalExpertExecutor::ComputeExpert (the local executor, the
// coordinator's own share and failover, expert workers), so all of them use
// the same kernels and give the same numbers.
//
// GgufFile::Open registers its mapping and ~GgufFile unregisters it, which
// drops the packed copies made from it (a later mapping at the same address
// never sees stale copies). Matrices outside every registered mapping (test
// buffers, expert-cache slots) are never copied.
#pragma once

#include <cstddef>

#include "kernels/matmul.h"

namespace st {

void RegisterFileMapping(const void* base, size_t size);
void UnregisterFileMapping(const void* base);

// m with `packed` set to its 16-row packed copy (kernels/packed_matrix.h)
// when m lies in a registered mapping, CanPack(m) and repacking is on; the
// copy is made on the first call (thread-safe) and the file pages of m are
// then released (MADV_DONTNEED), so RSS holds m once. Otherwise m unchanged.
MatrixRef PackedFromMapping(const MatrixRef& m);

// Frees m's packed copy, if one was made (its file pages are read again if
// m is used later). The caller makes sure no kernel is reading the copy
// (a worker drops the experts a new assignment no longer holds).
// Returns the bytes freed (0 if m had no copy).
size_t DropPackedCopy(const MatrixRef& m);

// Bytes of the packed copies held now (memory beyond the file mapping).
size_t PackedCopyBytes();

// Process-wide switch (default on; ModelOptions::repack / --no-repack).
void SetExpertRepack(bool on);

}  // namespace st
