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
#include "model/expert_ffn.h"

namespace st {

void RegisterFileMapping(const void* base, size_t size);
void UnregisterFileMapping(const void* base);

// m with `packed` set to its 16-row packed copy (kernels/packed_matrix.h)
// when m lies in a registered mapping, CanPack(m) and repacking is on; the
// copy is made on the first call (thread-safe) and the file pages of m are
// then released (MADV_DONTNEED), so RSS holds m once. Otherwise m unchanged.
MatrixRef PackedFromMapping(const MatrixRef& m);

// Expert matrices in a storage-only format (m.storage set: K-quants, Q4_1,
// Q5_0, Q5_1) go through the same registry: PackedFromMapping gives their
// Q8_0 conversion (kernels/ggml_storage.h ConvertRowsToQ8_0), packed when
// CanPack and repacking is on (`data` then null: only the packed kernels
// read it), else in rows; ConvertedFromMapping always gives rows (a
// transposed down, read row by row). Made on first use, then shared; the
// file pages of m are released. A matrix outside every mapping is
// converted too (kept until exit). Other matrices pass unchanged.
MatrixRef ConvertedFromMapping(const MatrixRef& m);

// Frees m's packed copy (or conversions), if one was made (its file pages are read again if
// m is used later). The caller makes sure no kernel is reading the copy
// (a worker drops the experts a new assignment no longer holds).
// Returns the bytes freed (0 if m had no copy).
size_t DropPackedCopy(const MatrixRef& m);

// Bytes of the packed copies and conversions held now (memory beyond the
// file mapping).
size_t PackedCopyBytes();

// Process-wide switch (default on; ModelOptions::repack / --no-repack).
void SetExpertRepack(bool on);

// Whether m (an expert matrix) is computed in its own storage format, in
// rows, rather than converted: Q4_K or Q6_K (kernels/kquant_dot.h) with
// whole 256-weight rows, not packed, and native K-quants on.
bool ComputedNatively(const MatrixRef& m);
// m unchanged when ComputedNatively(m), else PackedFromMapping(m). For the
// callers that compute through ExpertPhases, which reads both kinds.
MatrixRef PackedOrNative(const MatrixRef& m);
// m (ComputedNatively) with `packed_kquant` set to its 16-row packed copy
// (kernels/packed_kquant.h) when m lies in a registered mapping and
// CanPackKQuant (repacking on or off: the layout sets the numbers, as an
// expert pack holds it): made on first use, then shared, the
// file pages of m released (its `data` stays, for the row kernels).
// Otherwise m unchanged.
MatrixRef PackedKQuantFromMapping(const MatrixRef& m);
// PackedKQuantFromMapping when ComputedNatively(m), else PackedFromMapping:
// for the matrices computed whole (gate, a non-transposed down).
MatrixRef PackedKQuantOrNative(const MatrixRef& m);
// Whether an expert (or a stack of them) is computed with its K-quant
// matrices as stored: some matrix ComputedNatively, the down not
// transposed, and every other matrix packed or packable
// (ExpertPhases reads packed and native matrices only). Otherwise every
// matrix of it is converted, as before native K-quants.
bool ExpertComputedNatively(const ExpertMatrices& m);
// The matrices as they are computed: when ExpertComputedNatively, gate and
// down PackedKQuantOrNative, up PackedOrNative; else PackedFromMapping (a transposed down:
// ConvertedFromMapping, in rows).
ExpertMatrices PrepareExpert(const ExpertMatrices& m);
// Process-wide switch (default on; ModelOptions::native_kquant).
void SetNativeKQuant(bool on);

}  // namespace st
