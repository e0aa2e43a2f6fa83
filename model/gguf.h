// GGUF v2/v3 files: metadata values, tensor infos, a validating reader.
//
// Format: magic "GGUF", u32 version, u64 tensor count, u64 metadata count,
// metadata key/value pairs, tensor infos (name, n_dims, ne[], ggml type,
// offset), padding to `general.alignment` (default 32), tensor data.
// All integers little-endian.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/ggml_storage.h"

namespace st {

// Limits enforced by both the reader and the writer.
inline constexpr uint32_t kGgufMaxDims = 4;             // n_dims in [1, 4]
inline constexpr uint64_t kGgufDefaultAlignment = 32;  // without general.alignment
inline constexpr int kGgufMaxArrayDepth = 8;           // array-of-array nesting
// Memory the metadata's arrays may take once decoded (8 bytes per number,
// a std::string or GgufArray per string or nested array): a real tokenizer's
// arrays take ~15 MiB, while a sparse file of mostly u8 or empty-array
// elements had asked for up to ~20x its size and aborted on bad_alloc.
inline constexpr uint64_t kGgufMaxDecodedArrayBytes = uint64_t{256} << 20;

// GGUF metadata value types, numbered as in the file.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
// "uint8", "int8", ..., "float64"; "unknown" for ids outside the enum.
std::string_view GgufTypeName(GgufType type);

struct GgufValue;
struct GgufArray {
  GgufType elem_type = GgufType::kUint8;
  // Exactly one of these is used, chosen by elem_type: integers and bools in
  // `ints` (sign-extended / zero-extended), floats in `floats`, strings in
  // `strings`, nested arrays in `arrays`.
  // kUint64 elements: the reader stores them in `uints`; the writer accepts
  // them in `uints`, or in `ints` if all are non-negative (not both).
  std::vector<int64_t> ints;
  std::vector<uint64_t> uints;  // for kUint64 only (values > INT64_MAX)
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::vector<GgufArray> arrays;
  size_t size() const;
};

// One metadata value. The stored alternative follows `type`:
// signed ints -> int64_t, unsigned ints -> uint64_t, floats -> double,
// bool -> bool, string -> std::string, array -> GgufArray.
struct GgufValue {
  GgufType type = GgufType::kUint32;
  std::variant<int64_t, uint64_t, double, bool, std::string, GgufArray> v;

  static GgufValue U8(uint8_t x) { return {GgufType::kUint8, uint64_t{x}}; }
  static GgufValue I8(int8_t x) { return {GgufType::kInt8, int64_t{x}}; }
  static GgufValue U16(uint16_t x) { return {GgufType::kUint16, uint64_t{x}}; }
  static GgufValue I16(int16_t x) { return {GgufType::kInt16, int64_t{x}}; }
  static GgufValue U32(uint32_t x) { return {GgufType::kUint32, uint64_t{x}}; }
  static GgufValue I32(int32_t x) { return {GgufType::kInt32, int64_t{x}}; }
  static GgufValue U64(uint64_t x) { return {GgufType::kUint64, x}; }
  static GgufValue I64(int64_t x) { return {GgufType::kInt64, x}; }
  static GgufValue F32(float x) { return {GgufType::kFloat32, double{x}}; }
  static GgufValue F64(double x) { return {GgufType::kFloat64, x}; }
  static GgufValue Bool(bool x) { return {GgufType::kBool, x}; }
  static GgufValue Str(std::string x) { return {GgufType::kString, std::move(x)}; }
  static GgufValue Arr(GgufArray a) { return {GgufType::kArray, std::move(a)}; }
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // ggml dims, fastest-varying first
  // The type the kernels read it as. For a tensor in a storage-only format
  // (`storage` set, e.g. Q6_K) the file's bytes are NOT of this type: it is
  // the type the loader converts them to (kQ8_0), and only the loader
  // (model/weights.cc) may read such a tensor.
  DType type = DType::kF32;
  uint32_t ggml_type = 0;    // ggml's type id in the file (== type unless `storage`)
  const StorageFormat* storage = nullptr;  // kernels/ggml_storage.h
  uint64_t offset = 0;       // relative to the start of the data section
  uint64_t n_bytes = 0;      // derived from ne and the file's type
  uint64_t n_elements() const;
  // ggml's name of the file's type ("Q4_0", "Q6_K").
  std::string_view type_name() const;
};

// Byte size of a tensor of `type` with ggml dims `ne`. INVALID_ARGUMENT if
// n_dims is not in [1, kGgufMaxDims], a dim is 0 or > INT64_MAX, ne[0] is not
// a multiple of BlockElems(type), or the element count or byte size overflows
// int64. Shared by the reader and the writer.
absl::StatusOr<uint64_t> GgufTensorBytes(DType type, const std::vector<uint64_t>& ne);
// The same for a ggml type id: a DType or a storage-only format; any other
// id is INVALID_ARGUMENT naming the type and what the engine reads.
absl::StatusOr<uint64_t> GgufTensorBytes(uint32_t ggml_type, const std::vector<uint64_t>& ne);

// A parsed GGUF file. Open() memory-maps the file read-only and checks every
// count, string length, offset and size against the file; malformed input is
// INVALID_ARGUMENT naming the problem (never a crash). Tensor types other than
// F32/F16/BF16/Q8_0/Q4_0 are INVALID_ARGUMENT naming the tensor and type.
// Thread-safe after construction (read-only).
//
// Also rejected: versions other than 2/3, duplicate keys or tensor names,
// `general.alignment` that is not a u32 nonzero power of two, tensor offsets
// not a multiple of the alignment, tensor data past the end of the file, bools
// other than 0/1, arrays nested deeper than kGgufMaxArrayDepth. Errors read
// "<path>: [context: ]offset <byte>: <problem>". Not checked: overlapping
// tensor data, UTF-8 validity of strings. Padding after the last tensor's
// data is not required; a file with no tensors may even omit the padding
// before the data section (data_offset() is then file_size()).
// The mapping is MAP_PRIVATE read-only; truncating the file on disk while it
// is mapped raises SIGBUS on access (as with any mmap reader).
class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses an in-memory image (copied). Used by tests and the fuzzer.
  static absl::StatusOr<std::unique_ptr<GgufFile>> FromBuffer(std::string_view bytes);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t file_size() const { return size_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute file offset

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* Find(std::string_view key) const;
  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  // Typed getters: NOT_FOUND if absent, INVALID_ARGUMENT (naming key, wanted
  // and actual type) if the type does not fit. Integers convert between widths
  // when the value is in range; floats accept F32 and F64.
  absl::StatusOr<uint32_t> GetUint32(std::string_view key) const;
  absl::StatusOr<uint64_t> GetUint64(std::string_view key) const;
  absl::StatusOr<float> GetFloat32(std::string_view key) const;
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  absl::StatusOr<std::string> GetString(std::string_view key) const;
  absl::StatusOr<std::vector<std::string>> GetStringArray(std::string_view key) const;
  absl::StatusOr<std::vector<int32_t>> GetInt32Array(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;
  // Whether p points into this file's mapping.
  bool Contains(const void* p) const {
    const auto* b = static_cast<const uint8_t*>(p);
    return base_ != nullptr && b >= base_ && b < base_ + size_;
  }
  // Pointer to the tensor's bytes inside the mapping (valid while *this lives).
  const uint8_t* TensorData(const GgufTensorInfo& info) const {
    return base_ + data_offset_ + info.offset;
  }
  const uint8_t* base() const { return base_; }
  // Drops this process's mapping of the whole pages inside [p, p + n) of
  // the file image (MADV_DONTNEED: re-read from the file if touched again),
  // for data that now lives elsewhere. A no-op for FromBuffer images and for
  // ranges outside the image.
  void ReleasePages(const void* p, size_t n) const;

 private:
  GgufFile() = default;
  absl::Status Parse();      // ParseImpl() with errors prefixed by path_
  absl::Status ParseImpl();

  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  void* mapping_ = nullptr;     // mmap'd region (nullptr for FromBuffer)
  std::string owned_;           // FromBuffer storage
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  // Name -> index into metadata_ / tensors_. Keys view the names' bytes in the
  // file image (base_), which never moves while *this lives.
  std::unordered_map<std::string_view, size_t> key_index_;
  std::unordered_map<std::string_view, size_t> tensor_index_;
};

// Writes a GGUF v3 file in one pass, tensor data streamed tensor by tensor so
// that a file far larger than RAM can be produced:
//   GgufWriter w;  w.Set(...)...; w.AddTensorInfo(...)...;
//   ST_RETURN_IF_ERROR(w.Begin(path));
//   for each tensor in AddTensorInfo order: w.WriteTensorData(name, bytes);
//   ST_RETURN_IF_ERROR(w.Finish());
// Finish() fails unless every declared tensor was written. Write errors (full
// disk, ...) are Status naming the path. Thread-compatible.
//
// Metadata values are validated at Begin() (INVALID_ARGUMENT naming the key if
// the variant alternative does not match `type` or an integer is out of range
// for it). Set() after Begin() makes Finish() fail (FAILED_PRECONDITION). An
// I/O error is sticky: every later call returns it. Tensor data is padded to
// the alignment after every tensor, as llama.cpp does. Destroying the writer
// before Finish() closes the file and leaves it incomplete (the reader rejects
// it as truncated); nothing is fsync'ed.
class GgufWriter {
 public:
  GgufWriter();
  ~GgufWriter();

  void Set(std::string key, GgufValue value);  // replaces an existing key
  // Declares a tensor; ne is ggml order (fastest first). Offsets are assigned
  // with `general.alignment` (default 32; set the key before Begin to change).
  absl::Status AddTensorInfo(std::string name, DType type, std::vector<uint64_t> ne);
  // A tensor in a storage-only format (kernels/ggml_storage.h) or any DType,
  // by ggml type id.
  absl::Status AddTensorInfo(std::string name, uint32_t ggml_type, std::vector<uint64_t> ne);

  absl::Status Begin(const std::string& path);
  // `bytes` must have exactly the declared tensor's byte size; tensors must be
  // written in declaration order.
  absl::Status WriteTensorData(std::string_view name, const void* bytes, size_t n);
  absl::Status Finish();

  // For tests: the bytes of a small file built in memory instead of on disk
  // (Begin/Write/Finish not used). Tensor data given in declaration order.
  // The offset and n_bytes fields of `tensors` are ignored (recomputed);
  // version 2 writes the same little-endian layout with version field 2.
  static absl::StatusOr<std::string> BuildInMemory(
      const std::vector<std::pair<std::string, GgufValue>>& metadata,
      const std::vector<GgufTensorInfo>& tensors, const std::vector<std::string>& data,
      uint32_t version = 3);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace st
