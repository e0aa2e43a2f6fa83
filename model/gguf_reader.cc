// GGUF reader: memory-maps the file and validates every count, length, shape
// and offset against the bytes that remain before allocating anything.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/process_memory.h"
#include "common/status_macros.h"
#include "model/gguf.h"
#include "model/mapped_repack.h"

namespace st {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF reader assumes little-endian");

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
// Lower bounds on the encoded size of one item, used to reject absurd counts
// before allocating: key (u64 len) + type (u32) + smallest value (1 byte), and
// name (u64 len) + n_dims (u32) + one dim (u64) + type (u32) + offset (u64).
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

// Abseil 20220623's StrCat does not take std::string_view.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Invalid(uint64_t offset, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("offset ", offset, ": ", what));
}

constexpr std::string_view kTypeNames[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                           "int32",  "float32", "bool",   "string", "array",
                                           "uint64", "int64",   "float64"};
// Smallest encoded size of one element of each type (string: u64 length;
// array: elem type + count), used to bound counts by the bytes left.
constexpr uint64_t kMinElemBytes[] = {1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8};
static_assert(std::size(kTypeNames) == std::size(kMinElemBytes));

uint64_t MinElemBytes(GgufType type) {  // 0 if unknown
  const auto i = static_cast<uint32_t>(type);
  return i < std::size(kMinElemBytes) ? kMinElemBytes[i] : 0;
}

// Bounds-checked little-endian reader over the file image. Every read checks
// the remaining bytes first. Not thread-safe; one per parse.
class Cursor {
 public:
  Cursor(const uint8_t* data, uint64_t size) : data_(data), size_(size) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  // Decoded bytes the metadata's arrays take so far (kGgufMaxDecodedArrayBytes).
  uint64_t decoded = 0;

  template <typename T>
  absl::StatusOr<T> Read(std::string_view what) {
    if (remaining() < sizeof(T)) return Truncated(sizeof(T), what);
    T x;
    std::memcpy(&x, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return x;
  }

  // A u64 length followed by that many bytes; the view points into the image.
  absl::StatusOr<std::string_view> ReadString(std::string_view what) {
    const uint64_t at = pos_;
    ST_ASSIGN_OR_RETURN(uint64_t len, Read<uint64_t>(what));
    if (len > remaining()) {
      return Invalid(at, absl::StrCat(Sv(what), ": string length ", len, " exceeds the ",
                                      remaining(), " bytes left in the file"));
    }
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  absl::Status Truncated(uint64_t need, std::string_view what) const {
    return Invalid(pos_, absl::StrCat("truncated file: ", Sv(what), " needs ", need,
                                      " bytes, only ", remaining(), " left"));
  }

  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

absl::Status ReadArray(Cursor& c, int depth, GgufArray& out);

// Reads one value of `type` (already read) into `out`.
absl::Status ReadValue(Cursor& c, GgufType type, int depth, GgufValue& out) {
  out.type = type;
  switch (type) {
#define ST_GGUF_INT(kind, T, Stored)                         \
  case GgufType::kind: {                                     \
    ST_ASSIGN_OR_RETURN(T x, c.Read<T>(GgufTypeName(type))); \
    out.v = static_cast<Stored>(x);                          \
    return absl::OkStatus();                                 \
  }
    ST_GGUF_INT(kUint8, uint8_t, uint64_t)
    ST_GGUF_INT(kInt8, int8_t, int64_t)
    ST_GGUF_INT(kUint16, uint16_t, uint64_t)
    ST_GGUF_INT(kInt16, int16_t, int64_t)
    ST_GGUF_INT(kUint32, uint32_t, uint64_t)
    ST_GGUF_INT(kInt32, int32_t, int64_t)
    ST_GGUF_INT(kUint64, uint64_t, uint64_t)
    ST_GGUF_INT(kInt64, int64_t, int64_t)
    ST_GGUF_INT(kFloat32, float, double)
    ST_GGUF_INT(kFloat64, double, double)
#undef ST_GGUF_INT
    case GgufType::kBool: {
      const uint64_t at = c.pos();
      ST_ASSIGN_OR_RETURN(uint8_t x, c.Read<uint8_t>("bool"));
      if (x > 1) return Invalid(at, absl::StrCat("bool value ", x, " is neither 0 nor 1"));
      out.v = x == 1;
      return absl::OkStatus();
    }
    case GgufType::kString: {
      ST_ASSIGN_OR_RETURN(std::string_view s, c.ReadString("string value"));
      out.v = std::string(s);
      return absl::OkStatus();
    }
    case GgufType::kArray: {
      GgufArray a;
      ST_RETURN_IF_ERROR(ReadArray(c, depth + 1, a));
      out.v = std::move(a);
      return absl::OkStatus();
    }
  }
  return Invalid(c.pos() - 4,
                 absl::StrCat("unknown metadata value type ", static_cast<uint32_t>(type)));
}

// Reads an array body (elem type, count, elements); `depth` is 1 for an array
// value, 2 for its nested arrays, ...
absl::Status ReadArray(Cursor& c, int depth, GgufArray& out) {
  const uint64_t at = c.pos();
  if (depth > kGgufMaxArrayDepth) {
    return Invalid(at, absl::StrCat("arrays nested deeper than ", kGgufMaxArrayDepth));
  }
  ST_ASSIGN_OR_RETURN(uint32_t raw_type, c.Read<uint32_t>("array element type"));
  const auto elem = static_cast<GgufType>(raw_type);
  const uint64_t min_bytes = MinElemBytes(elem);
  if (min_bytes == 0) return Invalid(at, absl::StrCat("unknown array element type ", raw_type));
  ST_ASSIGN_OR_RETURN(uint64_t n, c.Read<uint64_t>("array length"));
  if (n > c.remaining() / min_bytes) {
    return Invalid(
        at, absl::StrCat("array length ", n, " of ", Sv(GgufTypeName(elem)), " needs at least ",
                         min_bytes, " bytes each, only ", c.remaining(), " bytes left"));
  }
  const uint64_t per = elem == GgufType::kString  ? sizeof(std::string)
                       : elem == GgufType::kArray ? sizeof(GgufArray)
                                                  : sizeof(int64_t);
  if (n > (kGgufMaxDecodedArrayBytes - c.decoded) / per) {
    return Invalid(at, absl::StrCat("array of ", n, " ", Sv(GgufTypeName(elem)),
                                    " would take the metadata's arrays past ",
                                    kGgufMaxDecodedArrayBytes >> 20, " MiB in memory"));
  }
  c.decoded += n * per;
  out.elem_type = elem;
  switch (elem) {  // n is bounded now: no regrowth (up to twice the memory)
    case GgufType::kString: out.strings.reserve(n); break;
    case GgufType::kArray: out.arrays.reserve(n); break;
    case GgufType::kUint64: out.uints.reserve(n); break;
    case GgufType::kFloat32:
    case GgufType::kFloat64: out.floats.reserve(n); break;
    default: out.ints.reserve(n); break;
  }
  GgufValue v;
  for (uint64_t i = 0; i < n; ++i) {
    ST_RETURN_IF_ERROR(ReadValue(c, elem, depth, v));
    if (const auto* x = std::get_if<int64_t>(&v.v)) {
      out.ints.push_back(*x);
    } else if (const auto* u = std::get_if<uint64_t>(&v.v); u && elem == GgufType::kUint64) {
      out.uints.push_back(*u);
    } else if (u != nullptr) {  // uint8/16/32: fits int64 exactly
      out.ints.push_back(static_cast<int64_t>(*u));
    } else if (const auto* f = std::get_if<double>(&v.v)) {
      out.floats.push_back(*f);
    } else if (const auto* b = std::get_if<bool>(&v.v)) {
      out.ints.push_back(*b ? 1 : 0);
    } else if (auto* s = std::get_if<std::string>(&v.v)) {
      out.strings.push_back(std::move(*s));
    } else {
      out.arrays.push_back(std::move(std::get<GgufArray>(v.v)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view GgufTypeName(GgufType type) {
  const auto i = static_cast<uint32_t>(type);
  return i < std::size(kTypeNames) ? kTypeNames[i] : "unknown";
}

size_t GgufArray::size() const {
  switch (elem_type) {
    case GgufType::kFloat32:
    case GgufType::kFloat64:
      return floats.size();
    case GgufType::kString:
      return strings.size();
    case GgufType::kArray:
      return arrays.size();
    case GgufType::kUint64:
      return uints.empty() ? ints.size() : uints.size();
    default:
      return ints.size();
  }
}

uint64_t GgufTensorInfo::n_elements() const {
  uint64_t n = 1;
  for (uint64_t d : ne) n *= d;
  return n;
}

std::string_view GgufTensorInfo::type_name() const {
  return storage != nullptr ? GgmlTypeName(ggml_type) : DTypeName(type);
}

namespace {

// Byte size of ne's elements in blocks of `block` elements, `block_bytes`
// bytes each (`type` names them in errors).
absl::StatusOr<uint64_t> BlockTensorBytes(std::string_view type, uint64_t block,
                                          uint64_t block_bytes, const std::vector<uint64_t>& ne) {
  if (ne.empty() || ne.size() > kGgufMaxDims) {
    return absl::InvalidArgumentError(
        absl::StrCat("n_dims ", ne.size(), " not in [1, ", kGgufMaxDims, "]"));
  }
  constexpr uint64_t kMax = static_cast<uint64_t>(INT64_MAX);
  uint64_t n_elements = 1;
  for (size_t i = 0; i < ne.size(); ++i) {
    if (ne[i] == 0 || ne[i] > kMax) {
      return absl::InvalidArgumentError(
          absl::StrCat("dim ne[", i, "] = ", ne[i], " not in [1, 2^63)"));
    }
    if (__builtin_mul_overflow(n_elements, ne[i], &n_elements) || n_elements > kMax) {
      return absl::InvalidArgumentError(
          absl::StrCat("element count overflows at ne[", i, "] = ", ne[i]));
    }
  }
  if (ne[0] % block != 0) {
    return absl::InvalidArgumentError(absl::StrCat("ne[0] = ", ne[0], " is not a multiple of the ",
                                                   Sv(type), " block size ", block));
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(n_elements / block, block_bytes, &bytes) || bytes > kMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("byte size of ", n_elements, " ", Sv(type), " elements overflows"));
  }
  return bytes;
}

}  // namespace

absl::StatusOr<uint64_t> GgufTensorBytes(DType type, const std::vector<uint64_t>& ne) {
  if (!DTypeFromGgml(static_cast<uint32_t>(type)).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("invalid DType ", static_cast<uint32_t>(type)));
  }
  return BlockTensorBytes(DTypeName(type), BlockElems(type), BlockBytes(type), ne);
}

absl::StatusOr<uint64_t> GgufTensorBytes(uint32_t ggml_type, const std::vector<uint64_t>& ne) {
  absl::StatusOr<DType> dtype = DTypeFromGgml(ggml_type);
  if (dtype.ok()) return GgufTensorBytes(*dtype, ne);
  if (const StorageFormat* f = FindStorageFormat(ggml_type)) {
    return BlockTensorBytes(f->name, f->block_elems, f->block_bytes, ne);
  }
  return dtype.status();
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  // O_NONBLOCK: a FIFO must not block the open (waiting for a writer)
  // before it is refused as not a regular file; regular files ignore it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", path));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("fstat ", path));
  }
  if (!S_ISREG(st.st_mode) || st.st_size <= 0) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, S_ISREG(st.st_mode) ? ": empty file (0 bytes), not a GGUF file"
                                               : ": not a regular file"));
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file referenced
  if (p == MAP_FAILED) return absl::ErrnoToStatus(err, absl::StrCat("mmap ", path));
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->mapping_ = p;
  f->base_ = static_cast<const uint8_t*>(p);
  f->size_ = size;
  RegisterFileMapping(p, size);
  ST_RETURN_IF_ERROR(f->Parse());
  return f;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::FromBuffer(std::string_view bytes) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = "<memory>";
  f->owned_.assign(bytes.data(), bytes.size());
  f->base_ = reinterpret_cast<const uint8_t*>(f->owned_.data());
  f->size_ = f->owned_.size();
  ST_RETURN_IF_ERROR(f->Parse());
  return f;
}

void GgufFile::ReleasePages(const void* p, size_t n) const {
  const auto* b = static_cast<const uint8_t*>(p);
  if (mapping_ == nullptr || b < base_ || b + n > base_ + size_) return;
  ReleaseWholePages(p, n);
}

GgufFile::~GgufFile() {
  if (mapping_ != nullptr) {
    UnregisterFileMapping(mapping_);
    ::munmap(mapping_, size_);
  }
}

namespace {

// Reads the fixed header; returns {n_tensors, n_kv} after checking that both
// counts can fit in the remaining bytes.
absl::StatusOr<std::pair<uint64_t, uint64_t>> ReadHeader(Cursor& c, uint32_t& version) {
  if (c.remaining() == 0) return Invalid(0, "empty file (0 bytes), not a GGUF file");
  ST_ASSIGN_OR_RETURN(uint32_t magic, c.Read<uint32_t>("magic (not a GGUF file)"));
  if (magic != kMagic) {
    return Invalid(0, absl::StrCat("bad magic 0x", absl::Hex(magic, absl::kZeroPad8),
                                   ", expected \"GGUF\"; not a GGUF file"));
  }
  ST_ASSIGN_OR_RETURN(version, c.Read<uint32_t>("version"));
  if (version != 2 && version != 3) {
    const bool swapped = version == 0x02000000u || version == 0x03000000u;
    return Invalid(4, absl::StrCat("unsupported GGUF version ", version, " (only 2 and 3)",
                                   swapped ? "; big-endian files are not supported" : ""));
  }
  ST_ASSIGN_OR_RETURN(uint64_t n_tensors, c.Read<uint64_t>("tensor count"));
  ST_ASSIGN_OR_RETURN(uint64_t n_kv, c.Read<uint64_t>("metadata count"));
  const uint64_t left = c.remaining();
  if (n_tensors > left / kMinTensorInfoBytes || n_kv > left / kMinKvBytes ||
      n_tensors * kMinTensorInfoBytes + n_kv * kMinKvBytes > left) {
    return Invalid(
        8, absl::StrCat("tensor count ", n_tensors, " and metadata count ", n_kv,
                        " cannot fit in the ", left, " bytes left (a tensor info needs",
                        " >= ", kMinTensorInfoBytes, ", a key/value >= ", kMinKvBytes, ")"));
  }
  return std::make_pair(n_tensors, n_kv);
}

// Reads one key/value pair; errors name the key.
absl::Status ReadKv(Cursor& c, std::string_view& key, GgufValue& value) {
  ST_ASSIGN_OR_RETURN(key, c.ReadString("metadata key"));
  absl::Status s = [&]() -> absl::Status {
    ST_ASSIGN_OR_RETURN(uint32_t type, c.Read<uint32_t>("value type"));
    return ReadValue(c, static_cast<GgufType>(type), 0, value);
  }();
  return s.ok() ? s : Annotate(s, absl::StrCat("metadata key '", Sv(key), "'"));
}

// Reads n_dims, ne, type and offset of a tensor info (after its name).
absl::Status ReadTensorInfo(Cursor& c, uint64_t alignment, GgufTensorInfo& t) {
  const uint64_t at = c.pos();
  ST_ASSIGN_OR_RETURN(uint32_t n_dims, c.Read<uint32_t>("n_dims"));
  if (n_dims == 0 || n_dims > kGgufMaxDims) {
    return Invalid(at, absl::StrCat("n_dims ", n_dims, " not in [1, ", kGgufMaxDims, "]"));
  }
  t.ne.resize(n_dims);
  for (uint64_t& d : t.ne) {
    ST_ASSIGN_OR_RETURN(d, c.Read<uint64_t>("dimension"));
  }
  const uint64_t type_at = c.pos();
  ST_ASSIGN_OR_RETURN(uint32_t ggml_type, c.Read<uint32_t>("tensor type"));
  // A type the kernels take, or a storage-only format the loader converts
  // (kernels/ggml_storage.h); the message of any other names the type.
  absl::StatusOr<DType> dtype = DTypeFromGgml(ggml_type);
  t.ggml_type = ggml_type;
  t.storage = dtype.ok() ? nullptr : FindStorageFormat(ggml_type);
  if (!dtype.ok() && t.storage == nullptr) return Invalid(type_at, dtype.status().message());
  t.type = dtype.ok() ? *dtype : DType::kQ8_0;
  absl::StatusOr<uint64_t> n_bytes = GgufTensorBytes(ggml_type, t.ne);
  if (!n_bytes.ok()) return Invalid(at, n_bytes.status().message());
  t.n_bytes = *n_bytes;
  const uint64_t offset_at = c.pos();
  ST_ASSIGN_OR_RETURN(t.offset, c.Read<uint64_t>("tensor data offset"));
  if (t.offset % alignment != 0) {
    return Invalid(offset_at, absl::StrCat("data offset ", t.offset,
                                           " is not a multiple of the alignment ", alignment));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status GgufFile::Parse() {
  absl::Status s = ParseImpl();
  return s.ok() ? s : absl::InvalidArgumentError(absl::StrCat(path_, ": ", s.message()));
}

absl::Status GgufFile::ParseImpl() {
  Cursor c(base_, size_);
  ST_ASSIGN_OR_RETURN(auto counts, ReadHeader(c, version_));
  const auto [n_tensors, n_kv] = counts;

  // Capped: the counts are only bounded by the file size, and each entry
  // takes more memory than its minimum encoding; growth follows real entries.
  constexpr uint64_t kMaxReserve = 4096;
  metadata_.reserve(std::min(n_kv, kMaxReserve));
  for (uint64_t i = 0; i < n_kv; ++i) {
    const uint64_t at = c.pos();
    std::string_view key;
    GgufValue value;
    absl::Status s = ReadKv(c, key, value);
    if (!s.ok()) return Annotate(s, absl::StrCat("metadata entry ", i));
    if (auto [it, inserted] = key_index_.emplace(key, metadata_.size()); !inserted) {
      return Invalid(at, absl::StrCat("duplicate metadata key '", Sv(key), "' (entries ",
                                      it->second, " and ", i, ")"));
    }
    metadata_.emplace_back(std::string(key), std::move(value));
  }

  if (const GgufValue* a = Find("general.alignment")) {
    const uint64_t* x = std::get_if<uint64_t>(&a->v);
    if (a->type != GgufType::kUint32 || x == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("general.alignment must be uint32, found ", Sv(GgufTypeName(a->type))));
    }
    if (!std::has_single_bit(*x)) {
      return absl::InvalidArgumentError(
          absl::StrCat("general.alignment ", *x, " is not a nonzero power of two"));
    }
    alignment_ = *x;
  }

  tensors_.reserve(std::min(n_tensors, kMaxReserve));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const uint64_t at = c.pos();
    absl::StatusOr<std::string_view> name = c.ReadString("tensor name");
    if (!name.ok()) return Annotate(name.status(), absl::StrCat("tensor info ", i));
    if (auto [it, inserted] = tensor_index_.emplace(*name, tensors_.size()); !inserted) {
      return Invalid(at, absl::StrCat("duplicate tensor name '", Sv(*name), "' (tensor infos ",
                                      it->second, " and ", i, ")"));
    }
    GgufTensorInfo& t = tensors_.emplace_back();
    t.name = std::string(*name);
    absl::Status s = ReadTensorInfo(c, alignment_, t);
    if (!s.ok()) return Annotate(s, absl::StrCat("tensor '", Sv(*name), "'"));
  }

  // pos <= size_ < 2^63 and alignment_ <= 2^31, so this cannot overflow.
  data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (data_offset_ > size_) {
    if (!tensors_.empty()) {
      return Invalid(
          c.pos(), absl::StrCat("data section would start at ", data_offset_,
                                ", past the end of the file (", size_, " bytes); truncated file?"));
    }
    data_offset_ = size_;  // metadata-only file without the final padding
  }
  const uint64_t data_size = size_ - data_offset_;
  for (const GgufTensorInfo& t : tensors_) {
    if (t.offset > data_size || t.n_bytes > data_size - t.offset) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", t.name, "': data at offset ", t.offset, " + ", t.n_bytes,
                       " bytes extends past the end of the file (data section has ", data_size,
                       " bytes from file offset ", data_offset_, "); truncated file?"));
    }
  }
  return absl::OkStatus();
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &metadata_[it->second].second;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

std::string TypeDescription(const GgufValue& v) {
  const auto* a = std::get_if<GgufArray>(&v.v);
  if (v.type != GgufType::kArray || a == nullptr) return std::string(GgufTypeName(v.type));
  return absl::StrCat("array of ", Sv(GgufTypeName(a->elem_type)));
}

bool IsInteger(GgufType t) {
  return t != GgufType::kFloat32 && t != GgufType::kFloat64 && t != GgufType::kBool &&
         t != GgufType::kString && t != GgufType::kArray && MinElemBytes(t) != 0;
}

enum class Fit { kOk, kWrongType, kOutOfRange };

// Converts an integer held as int64 or uint64 to T if it is in range.
template <typename T, typename Stored>
Fit Narrow(const Stored& x, T& out) {
  if (!std::in_range<T>(x)) return Fit::kOutOfRange;
  out = static_cast<T>(x);
  return Fit::kOk;
}

template <typename T>
Fit IntegerAs(const GgufValue& v, T& out) {
  if (!IsInteger(v.type)) return Fit::kWrongType;
  if (const auto* i = std::get_if<int64_t>(&v.v)) return Narrow(*i, out);
  if (const auto* u = std::get_if<uint64_t>(&v.v)) return Narrow(*u, out);
  return Fit::kWrongType;
}

// Accepts only values of `type` holding a T.
template <typename T, GgufType type>
Fit Exact(const GgufValue& v, T& out) {
  const auto* x = std::get_if<T>(&v.v);
  if (v.type != type || x == nullptr) return Fit::kWrongType;
  out = *x;
  return Fit::kOk;
}

// Looks up `key` and converts it with `convert`; `wanted` names the requested
// type in errors.
template <typename T, typename Convert>
absl::StatusOr<T> Get(const GgufFile& f, std::string_view key, std::string_view wanted,
                      Convert convert) {
  const GgufValue* v = f.Find(key);
  if (v == nullptr) {
    return absl::NotFoundError(absl::StrCat(f.path(), ": metadata key '", Sv(key), "' not found"));
  }
  T out{};
  const Fit fit = convert(*v, out);
  if (fit == Fit::kOk) return out;
  return absl::InvalidArgumentError(absl::StrCat(
      f.path(), ": metadata key '", Sv(key), "': wanted ", Sv(wanted), ", found ",
      TypeDescription(*v), fit == Fit::kOutOfRange ? " with a value out of range" : ""));
}

}  // namespace

absl::StatusOr<uint32_t> GgufFile::GetUint32(std::string_view key) const {
  return Get<uint32_t>(*this, key, "uint32", IntegerAs<uint32_t>);
}

absl::StatusOr<uint64_t> GgufFile::GetUint64(std::string_view key) const {
  return Get<uint64_t>(*this, key, "uint64", IntegerAs<uint64_t>);
}

absl::StatusOr<float> GgufFile::GetFloat32(std::string_view key) const {
  return Get<float>(*this, key, "float32", [](const GgufValue& v, float& out) {
    const auto* x = std::get_if<double>(&v.v);
    if ((v.type != GgufType::kFloat32 && v.type != GgufType::kFloat64) || x == nullptr) {
      return Fit::kWrongType;
    }
    // Finite doubles beyond float range would be UB to convert.
    if (std::isfinite(*x) && std::fabs(*x) > std::numeric_limits<float>::max()) {
      return Fit::kOutOfRange;
    }
    out = static_cast<float>(*x);
    return Fit::kOk;
  });
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  return Get<bool>(*this, key, "bool", Exact<bool, GgufType::kBool>);
}

absl::StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  return Get<std::string>(*this, key, "string", Exact<std::string, GgufType::kString>);
}

absl::StatusOr<std::vector<std::string>> GgufFile::GetStringArray(std::string_view key) const {
  return Get<std::vector<std::string>>(
      *this, key, "array of string", [](const GgufValue& v, std::vector<std::string>& out) {
        const auto* a = std::get_if<GgufArray>(&v.v);
        if (v.type != GgufType::kArray || a == nullptr || a->elem_type != GgufType::kString) {
          return Fit::kWrongType;
        }
        out = a->strings;
        return Fit::kOk;
      });
}

absl::StatusOr<std::vector<int32_t>> GgufFile::GetInt32Array(std::string_view key) const {
  return Get<std::vector<int32_t>>(
      *this, key, "array of int32", [](const GgufValue& v, std::vector<int32_t>& out) {
        const auto* a = std::get_if<GgufArray>(&v.v);
        if (v.type != GgufType::kArray || a == nullptr || !IsInteger(a->elem_type)) {
          return Fit::kWrongType;
        }
        out.resize(a->ints.size() + a->uints.size());
        size_t i = 0;
        for (int64_t x : a->ints) {
          if (Narrow(x, out[i++]) != Fit::kOk) return Fit::kOutOfRange;
        }
        for (uint64_t x : a->uints) {
          if (Narrow(x, out[i++]) != Fit::kOk) return Fit::kOutOfRange;
        }
        return Fit::kOk;
      });
}

}  // namespace st
