// The expert pack: every routed expert of a GGUF model rewritten for direct
// reads from SSD. `smallthinker convert MODEL.gguf` writes MODEL.gguf.stpack.
//
// File layout (all integers little-endian, all offsets absolute):
//
//   [0, 4096)            header (PackHeader fields, see kHeader* below), zero padded
//   [4096, 4096 + 8*N)   checksum table: XXH3-64 of each record, record order
//   ... zero padding to records_offset (a multiple of 4096)
//   [records_offset + r * record_size, ...)  record r = layer * n_experts + expert
//
// Header fields at fixed offsets:
//    0 char[8] magic "STPACK\0\1"      40 u64 matrix_bytes   (unpadded, one matrix)
//    8 u32 version (1)                 48 u64 matrix_stride  (matrix_bytes up to 4 KiB)
//   12 u32 expert type (ggml id)       56 u64 record_size    (3 * matrix_stride; as stored: below)
//   16 u64 model fingerprint           64 u64 record_count   (n_layers * n_experts)
//   24 u32 n_layers                    72 u64 checksum_table_offset (4096)
//   28 u32 n_experts                   80 u64 records_offset
//   32 u32 d_model                     88 u64 file_size
//   36 u32 d_expert                    96 u32 flags (kPackFlag*)
//                                     104 u64 XXH3-64 of header bytes [0, 104)
//                                         followed by the checksum table
//
// A record holds three matrices in the model's expert type, row-major, each
// starting 4 KiB-aligned inside the record (offset 0, stride, 2 * stride):
//   gate [d_expert, d_model], up [d_expert, d_model], down^T [d_expert, d_model]
// Down is stored transposed (row j = the d_model weights of hidden unit j) so
// sparse ReGLU can skip the rows whose gate is zero. With kPackFlagGatePacked
// (Q4_0/Q8_0 with d_expert % 16 == 0: what convert writes for them) the gate,
// which is always computed whole, is instead in the 16-row layout of
// kernels/packed_matrix.h (same bytes, re-ordered). With kPackFlagUpSplit
// (Q4_0: what convert writes) each up row is in the split layout of
// kernels/split_rows.h: its block scales, then its levels (same bytes,
// re-ordered), which sparse ReGLU's row kernel reads without byte permutes.
// Packs without it (older builds) are read as plain rows. Padding bytes are zero.
// The record checksum covers the whole record_size bytes, padding included:
// exactly what one O_DIRECT read returns.
//
// With kPackFlagAsStored (what convert writes for a K-quant file whose every
// expert matrix is Q4_K or Q6_K in whole 256-weight rows, the formats
// kernels/kquant_dot.h computes in) a record instead holds gate, up and down
// in the file's formats, down NOT transposed ([d_model, d_expert]): up as the
// GGUF stores it, and gate and down too, except that with
// kPackFlagKQuantPacked a Q4_K or Q6_K gate or down of the packable shape
// (PackableKQuantShape: rows % 16, cols % 256) is in the 16-row layout of
// kernels/packed_kquant.h (same bytes, re-ordered), as the experts in RAM
// are packed (model/mapped_repack.h) on a CPU with that kernel: convert
// sets the flag where PackedKQuantKernelsHere(), and a pack whose flag differs
// from the reading CPU's is refused (re-run convert there). So the
// offloaded experts are computed by the same kernels on the same bytes as
// in RAM (model/expert_phases.h) and give the same numbers bit for bit. The types may differ per layer (Q4_K_M keeps
// Q6_K downs in some layers), so the header holds them, and the record has
// room for each matrix's largest type:
//   112 u64 up offset in the record     120 u64 down offset in the record
//   512 u8[3 * n_layers] ggml type of (gate, up, down) per layer
// matrix_bytes is then the largest matrix, matrix_stride its 4 KiB-aligned
// size, record_size the down offset plus the largest down 4 KiB-aligned,
// the type field 8 (Q8_0: what these formats become when converted), and
// the header checksum also covers bytes [112, 4096).
//
// Numerics of the transposed down: upstream GGUFs store down as
// [d_model, d_expert]. For F32/F16/BF16 the transpose is exact. For Q4_0/Q8_0
// the converter dequantizes, transposes and re-quantizes (QuantizeRow), so each
// value is rounded a second time with a block scale taken over 32 consecutive
// d_model entries instead of 32 d_expert entries: the error per value is up to
// one quantization step of the new block (|d| = amax/8 for Q4_0, amax/127 for
// Q8_0) on top of the original rounding. Outputs computed from the pack are then
// close to, not bit-identical with, outputs computed from the GGUF's down; the
// header flag kPackFlagDownRequantized records that this happened. PowerInfer
// GGUFs whose down is already [d_expert, d_model] are copied byte for byte.
//
// The fingerprint binds a pack to its GGUF: XXH3-64 over the GGUF's first
// data_offset bytes (header, metadata, tensor infos), its file size, and the
// first min(4096, n_bytes) bytes of every tensor's data. It does not hash all
// the data (multi-GB); two files with equal metadata, shapes, size and equal
// first 4 KiB of every tensor are considered the same model.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/matmul.h"
#include "model/gguf.h"

struct XXH3_state_s;  // xxhash.h

namespace st {

inline constexpr char kPackMagic[8] = {'S', 'T', 'P', 'A', 'C', 'K', '\0', '\1'};
inline constexpr uint32_t kPackVersion = 1;
inline constexpr uint64_t kPackAlignment = 4096;  // O_DIRECT block and page size
inline constexpr uint64_t kPackHeaderBytes = 4096;
inline constexpr uint32_t kPackFlagDownRequantized = 1;  // down^T was re-quantized
// Gate in the first 16-row packed layout (all of a group's scales ahead of its
// data): no longer read; such a pack is refused with "re-run convert".
inline constexpr uint32_t kPackFlagGatePackedV1 = 2;
inline constexpr uint32_t kPackFlagGatePacked = 4;  // gate in kernels/packed_matrix.h's layout
inline constexpr uint32_t kPackFlagUpSplit = 8;     // Q4_0 up rows in kernels/split_rows.h's layout
inline constexpr uint32_t kPackFlagAsStored = 16;  // K-quant matrices as the GGUF stores them
// With kPackFlagAsStored: the gates and downs of the packable shape in
// kernels/packed_kquant.h's layout (written where PackedKQuantKernelsHere(); a
// pack of session 28 has rows, as one converted on a CPU without it).
inline constexpr uint32_t kPackFlagKQuantPacked = 32;
inline constexpr uint32_t kPackKnownFlags = kPackFlagDownRequantized | kPackFlagGatePacked |
                                            kPackFlagUpSplit | kPackFlagAsStored |
                                            kPackFlagKQuantPacked;

// Where an as-stored pack's type table starts in the header page.
inline constexpr uint64_t kPackStoredTypesOffset = 512;

inline uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Everything the header says. Value type; thread-compatible.
struct PackHeader {
  uint32_t version = kPackVersion;
  DType expert_type = DType::kF32;
  uint64_t fingerprint = 0;
  uint32_t n_layers = 0, n_experts = 0, d_model = 0, d_expert = 0;
  uint64_t matrix_bytes = 0, matrix_stride = 0, record_size = 0, record_count = 0;
  uint64_t checksum_table_offset = kPackHeaderBytes, records_offset = 0, file_size = 0;
  uint32_t flags = 0;
  // Where gate, up and down start in a record.
  uint64_t matrix_offset[3] = {0, 0, 0};
  // kPackFlagAsStored: ggml type ids of (gate, up, down) of every layer,
  // [3 * n_layers]; empty otherwise.
  std::vector<uint32_t> stored_types;

  // Fills the derived fields (sizes, offsets) from type and dimensions.
  // INVALID_ARGUMENT if d_model is not a multiple of the type's block.
  static absl::StatusOr<PackHeader> Make(DType type, uint64_t fingerprint, uint32_t n_layers,
                                         uint32_t n_experts, uint32_t d_model, uint32_t d_expert,
                                         uint32_t flags);
  // The same for a pack whose records hold the matrices as stored
  // (kPackFlagAsStored): `stored_types` as the field above. INVALID_ARGUMENT
  // unless every type is one kernels/kquant_dot.h computes and d_model and
  // d_expert are whole 256-weight blocks.
  // kquant_packed: kPackFlagKQuantPacked.
  static absl::StatusOr<PackHeader> MakeAsStored(uint64_t fingerprint, uint32_t n_layers,
                                                 uint32_t n_experts, uint32_t d_model,
                                                 uint32_t d_expert,
                                                 std::vector<uint32_t> stored_types,
                                                 bool kquant_packed = true);
  bool as_stored() const { return (flags & kPackFlagAsStored) != 0; }
  // Matrix m (0 gate, 1 up, 2 down) of a record of `layer` at `record`, as
  // the kernels read it: gate [d_expert, d_model] (packed when
  // kPackFlagGatePacked), up [d_expert, d_model] (split rows when
  // kPackFlagUpSplit), down^T [d_expert, d_model]; or, as stored, the
  // file's formats (`storage` set) with down [d_model, d_expert], a packed
  // gate or down with `packed_kquant` set and no `data`.
  MatrixRef RecordMatrix(const char* record, int layer, int m) const;
  // Bytes matrix m of `layer` fills in a record (the rest is zero padding).
  uint64_t MatrixBytes(int layer, int m) const;
  // The records' types: "Q4_0", or as stored the distinct ones ("Q4_K, Q6_K").
  std::string TypeNames() const;
  uint64_t RecordIndex(int layer, int expert) const {
    return static_cast<uint64_t>(layer) * n_experts + expert;
  }
  uint64_t RecordOffset(int layer, int expert) const {
    return records_offset + RecordIndex(layer, expert) * record_size;
  }
  uint64_t row_bytes() const { return RowBytes(expert_type, d_model); }
};

// Serialized header page (kPackHeaderBytes) followed by the checksum table,
// padded with zeros to records_offset. checksums.size() == record_count.
std::string SerializePackPrefix(const PackHeader& h, const std::vector<uint64_t>& checksums);

// The fingerprint described above. Cost: one read of the metadata and 4 KiB
// per tensor.
uint64_t GgufFingerprint(const GgufFile& gguf);

// The fingerprint's complement for pairing a coordinator with a worker:
// XXH3-64 of each tensor's last 4 KiB and the 4 KiB in its middle (those
// beyond the first 4 KiB the fingerprint reads). Two copies of one model
// that differ there (an incomplete download into a file made full size
// first, a corrupted copy) have the same fingerprint and would compute
// different experts. Cost: two 4 KiB reads per tensor.
uint64_t GgufContentSample(const GgufFile& gguf);

// XXH3-64 of a record's bytes.
uint64_t RecordChecksum(const void* data, size_t n);

// RecordChecksum of bytes fed in consecutive parts (the same value as of
// their concatenation): the io_uring source hashes a record's chunks as
// they land.
class RecordHasher {
 public:
  RecordHasher();
  ~RecordHasher();
  RecordHasher(const RecordHasher&) = delete;
  RecordHasher& operator=(const RecordHasher&) = delete;
  void Reset();
  void Update(const void* data, size_t n);
  uint64_t Digest() const;

 private:
  ::XXH3_state_s* state_;  // libxxhash's XXH3_state_t
};

// "<path>.stpack".
std::string DefaultPackPath(const std::string& gguf_path);

// An opened, validated pack (header and checksum table in memory; the record
// bytes are read by an ExpertSource). Immutable, thread-safe.
class ExpertPack {
 public:
  // Reads and validates the header and checksum table:
  //  - INVALID_ARGUMENT: not a pack (magic), unknown version or type, header
  //    fields inconsistent with each other;
  //  - DATA_LOSS: the file is shorter than the header says (truncated), or
  //    the header checksum does not match;
  //  - INVALID_ARGUMENT: the file is longer than the header says.
  // Every message names the path.
  static absl::StatusOr<std::shared_ptr<const ExpertPack>> Open(const std::string& path);
  // Open() plus: the fingerprint equals GgufFingerprint(gguf) (else
  // FAILED_PRECONDITION naming both fingerprints and both paths, with a hint to
  // re-run convert) and the dimensions match the model's config.
  static absl::StatusOr<std::shared_ptr<const ExpertPack>> OpenFor(const std::string& path,
                                                                   const GgufFile& gguf);

  const std::string& path() const { return path_; }
  const PackHeader& header() const { return header_; }
  uint64_t checksum(int layer, int expert) const {
    return checksums_[header_.RecordIndex(layer, expert)];
  }
  // OK if (layer, expert) is inside the pack, else INVALID_ARGUMENT.
  absl::Status CheckIndex(int layer, int expert) const;
  // OK if the record bytes match the table, else DATA_LOSS naming layer,
  // expert, offset and path.
  absl::Status VerifyRecord(int layer, int expert, const void* data) const;
  // The same for a record whose RecordChecksum is `got`.
  absl::Status CheckChecksum(int layer, int expert, uint64_t got) const;

 private:
  std::string path_;
  PackHeader header_;
  std::vector<uint64_t> checksums_;
};

}  // namespace st
