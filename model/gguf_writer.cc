// GGUF writer: the header (metadata + tensor infos) is built in memory, then
// tensor data is streamed to the file tensor by tensor with alignment padding.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <limits>
#include <unordered_set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/gguf.h"

namespace st {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF writer assumes little-endian");

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" as a little-endian u32

struct TensorDecl {
  std::string name;
  uint32_t ggml_type;  // a DType or a storage-only format (kernels/ggml_storage.h)
  std::vector<uint64_t> ne;
  uint64_t n_bytes = 0;
  uint64_t offset = 0;  // relative to the data section, assigned by Layout()
};

// Abseil 20220623's StrCat does not take std::string_view.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

uint64_t AlignUp(uint64_t x, uint64_t alignment) {
  return (x + alignment - 1) / alignment * alignment;
}

template <typename T>
void Append(std::string& out, T x) {
  out.append(reinterpret_cast<const char*>(&x), sizeof(x));
}

void AppendString(std::string& out, std::string_view s) {
  Append<uint64_t>(out, s.size());
  out.append(s);
}

template <typename T, typename V>
bool PutInt(std::string& out, V x) {
  if (!std::in_range<T>(x)) return false;
  Append<T>(out, static_cast<T>(x));
  return true;
}

// Appends integer `x` (int64 or uint64) encoded as `type`; false if `type` is
// not an integer type or `x` is out of its range.
template <typename V>
bool AppendInt(std::string& out, GgufType type, V x) {
  switch (type) {
    case GgufType::kUint8:
      return PutInt<uint8_t>(out, x);
    case GgufType::kInt8:
      return PutInt<int8_t>(out, x);
    case GgufType::kUint16:
      return PutInt<uint16_t>(out, x);
    case GgufType::kInt16:
      return PutInt<int16_t>(out, x);
    case GgufType::kUint32:
      return PutInt<uint32_t>(out, x);
    case GgufType::kInt32:
      return PutInt<int32_t>(out, x);
    case GgufType::kUint64:
      return PutInt<uint64_t>(out, x);
    case GgufType::kInt64:
      return PutInt<int64_t>(out, x);
    default:
      return false;
  }
}

absl::Status AppendFloat(std::string& out, GgufType type, double x) {
  if (type == GgufType::kFloat64) {
    Append<double>(out, x);
  } else if (std::isfinite(x) && std::fabs(x) > std::numeric_limits<float>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("value ", x, " out of float32 range"));
  } else {
    Append<float>(out, static_cast<float>(x));
  }
  return absl::OkStatus();
}

absl::Status OutOfRange(GgufType type, size_t i, absl::string_view x) {
  return absl::InvalidArgumentError(
      absl::StrCat("element ", i, " = ", x, " out of range for ", Sv(GgufTypeName(type))));
}

// Appends an array body (elem type, count, elements); depth as in the reader.
absl::Status AppendArray(std::string& out, const GgufArray& a, int depth) {
  const GgufType elem = a.elem_type;
  if (depth > kGgufMaxArrayDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("arrays nested deeper than ", kGgufMaxArrayDepth));
  }
  if (GgufTypeName(elem) == "unknown") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown array element type ", static_cast<uint32_t>(elem)));
  }
  const size_t n = a.size();
  if (a.ints.size() + a.uints.size() + a.floats.size() + a.strings.size() + a.arrays.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("array of ", Sv(GgufTypeName(elem)),
                     " holds elements in members that do not match the type"));
  }
  Append<uint32_t>(out, static_cast<uint32_t>(elem));
  Append<uint64_t>(out, n);
  switch (elem) {
    case GgufType::kFloat32:
    case GgufType::kFloat64:
      for (double x : a.floats) ST_RETURN_IF_ERROR(AppendFloat(out, elem, x));
      return absl::OkStatus();
    case GgufType::kString:
      for (const std::string& s : a.strings) AppendString(out, s);
      return absl::OkStatus();
    case GgufType::kArray:
      for (const GgufArray& sub : a.arrays) ST_RETURN_IF_ERROR(AppendArray(out, sub, depth + 1));
      return absl::OkStatus();
    case GgufType::kBool:
      for (size_t i = 0; i < n; ++i) {
        if (a.ints[i] != 0 && a.ints[i] != 1) return OutOfRange(elem, i, absl::StrCat(a.ints[i]));
        Append<uint8_t>(out, static_cast<uint8_t>(a.ints[i]));
      }
      return absl::OkStatus();
    default:
      for (size_t i = 0; i < a.uints.size(); ++i) {
        if (!AppendInt(out, elem, a.uints[i])) return OutOfRange(elem, i, absl::StrCat(a.uints[i]));
      }
      for (size_t i = 0; i < a.ints.size(); ++i) {
        if (!AppendInt(out, elem, a.ints[i])) return OutOfRange(elem, i, absl::StrCat(a.ints[i]));
      }
      return absl::OkStatus();
  }
}

// Appends the value type and the value. The variant alternative must match
// `v.type` (integers may use either int64_t or uint64_t) and be in range.
absl::Status AppendValue(std::string& out, const GgufValue& v) {
  Append<uint32_t>(out, static_cast<uint32_t>(v.type));
  const auto* i = std::get_if<int64_t>(&v.v);
  const auto* u = std::get_if<uint64_t>(&v.v);
  const auto* f = std::get_if<double>(&v.v);
  const auto* b = std::get_if<bool>(&v.v);
  const auto* s = std::get_if<std::string>(&v.v);
  const auto* a = std::get_if<GgufArray>(&v.v);
  switch (v.type) {
    case GgufType::kFloat32:
    case GgufType::kFloat64:
      if (f != nullptr) return AppendFloat(out, v.type, *f);
      break;
    case GgufType::kBool:
      if (b == nullptr) break;
      Append<uint8_t>(out, *b ? 1 : 0);
      return absl::OkStatus();
    case GgufType::kString:
      if (s == nullptr) break;
      AppendString(out, *s);
      return absl::OkStatus();
    case GgufType::kArray:
      if (a != nullptr) return AppendArray(out, *a, 1);
      break;
    default:
      if (GgufTypeName(v.type) == "unknown") {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown value type ", static_cast<uint32_t>(v.type)));
      }
      if ((i != nullptr && AppendInt(out, v.type, *i)) ||
          (u != nullptr && AppendInt(out, v.type, *u))) {
        return absl::OkStatus();
      }
      if (i != nullptr || u != nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("value ", i != nullptr ? absl::StrCat(*i) : absl::StrCat(*u),
                         " out of range for ", Sv(GgufTypeName(v.type))));
      }
  }
  return absl::InvalidArgumentError(absl::StrCat("value of type ", Sv(GgufTypeName(v.type)),
                                                 " holds variant alternative ", v.v.index()));
}

// `general.alignment` if set (must be a u32 nonzero power of two), else 32.
absl::StatusOr<uint64_t> AlignmentOf(const std::vector<std::pair<std::string, GgufValue>>& md) {
  for (const auto& [key, value] : md) {
    if (key != "general.alignment") continue;
    const auto* x = std::get_if<uint64_t>(&value.v);
    if (value.type != GgufType::kUint32 || x == nullptr || !std::has_single_bit(*x) ||
        *x > std::numeric_limits<uint32_t>::max()) {
      return absl::InvalidArgumentError(
          "general.alignment must be a uint32 nonzero power of two (GgufValue::U32)");
    }
    return *x;
  }
  return kGgufDefaultAlignment;
}

absl::StatusOr<TensorDecl> MakeDecl(std::string name, uint32_t ggml_type, std::vector<uint64_t> ne,
                                    const std::vector<TensorDecl>& existing) {
  for (const TensorDecl& t : existing) {
    if (t.name == name) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate tensor name '", name, "'"));
    }
  }
  absl::StatusOr<uint64_t> n_bytes = GgufTensorBytes(ggml_type, ne);
  if (!n_bytes.ok()) return Annotate(n_bytes.status(), absl::StrCat("tensor '", name, "'"));
  return TensorDecl{std::move(name), ggml_type, std::move(ne), *n_bytes, 0};
}

// Assigns tensor offsets and serializes everything before the data section,
// padded to the alignment. Returns the header bytes.
absl::StatusOr<std::string> Layout(const std::vector<std::pair<std::string, GgufValue>>& md,
                                   std::vector<TensorDecl>& tensors, uint32_t version,
                                   uint64_t alignment) {
  uint64_t offset = 0;
  for (TensorDecl& t : tensors) {
    t.offset = offset;
    if (__builtin_add_overflow(offset, AlignUp(t.n_bytes, alignment), &offset) ||
        offset > static_cast<uint64_t>(INT64_MAX)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor data size overflows at tensor '", t.name, "'"));
    }
  }
  std::string out;
  Append<uint32_t>(out, kMagic);
  Append<uint32_t>(out, version);
  Append<uint64_t>(out, tensors.size());
  Append<uint64_t>(out, md.size());
  std::unordered_set<std::string_view> keys;
  for (const auto& [key, value] : md) {
    if (!keys.insert(key).second) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate metadata key '", key, "'"));
    }
    AppendString(out, key);
    absl::Status s = AppendValue(out, value);
    if (!s.ok()) return Annotate(s, absl::StrCat("metadata key '", key, "'"));
  }
  for (const TensorDecl& t : tensors) {
    AppendString(out, t.name);
    Append<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (uint64_t d : t.ne) Append<uint64_t>(out, d);
    Append<uint32_t>(out, t.ggml_type);
    Append<uint64_t>(out, t.offset);
  }
  out.resize(AlignUp(out.size(), alignment), '\0');
  return out;
}

}  // namespace

struct GgufWriter::Impl {
  enum class State { kDeclaring, kWriting, kFinished };

  std::vector<std::pair<std::string, GgufValue>> metadata;
  std::vector<TensorDecl> tensors;
  State state = State::kDeclaring;
  absl::Status sticky;  // first error after Begin(); every later call returns it
  std::string path;
  int fd = -1;
  size_t next = 0;       // index of the next tensor to write
  uint64_t written = 0;  // bytes written to the file so far
  uint64_t alignment = kGgufDefaultAlignment;

  absl::Status Fail(absl::Status s) {
    if (sticky.ok()) sticky = s;
    return sticky;
  }

  // write(2) until done; EINTR retried, other errors (ENOSPC, EIO, ...) are
  // sticky and name the path and file offset.
  absl::Status WriteAll(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t r = ::write(fd, p, n);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        return Fail(absl::ErrnoToStatus(r < 0 ? errno : EIO,
                                        absl::StrCat("write ", path, " at offset ", written)));
      }
      p += r;
      n -= static_cast<size_t>(r);
      written += static_cast<uint64_t>(r);
    }
    return absl::OkStatus();
  }

  absl::Status Close() {
    if (fd < 0) return absl::OkStatus();
    const int r = ::close(fd);
    fd = -1;
    if (r != 0) return Fail(absl::ErrnoToStatus(errno, absl::StrCat("close ", path)));
    return absl::OkStatus();
  }
};

GgufWriter::GgufWriter() : impl_(std::make_unique<Impl>()) {}

GgufWriter::~GgufWriter() { (void)impl_->Close(); }

void GgufWriter::Set(std::string key, GgufValue value) {
  if (impl_->state != Impl::State::kDeclaring) {
    (void)impl_->Fail(
        absl::FailedPreconditionError(absl::StrCat("GgufWriter::Set('", key, "') after Begin()")));
    return;
  }
  for (auto& [k, v] : impl_->metadata) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  impl_->metadata.emplace_back(std::move(key), std::move(value));
}

absl::Status GgufWriter::AddTensorInfo(std::string name, DType type, std::vector<uint64_t> ne) {
  if (!DTypeFromGgml(static_cast<uint32_t>(type)).ok()) {  // a cast, not a DType
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': invalid DType ",
                                                   static_cast<uint32_t>(type)));
  }
  return AddTensorInfo(std::move(name), static_cast<uint32_t>(type), std::move(ne));
}

absl::Status GgufWriter::AddTensorInfo(std::string name, uint32_t ggml_type,
                                       std::vector<uint64_t> ne) {
  if (impl_->state != Impl::State::kDeclaring) {
    return absl::FailedPreconditionError(
        absl::StrCat("GgufWriter::AddTensorInfo('", name, "') after Begin()"));
  }
  ST_ASSIGN_OR_RETURN(TensorDecl t, MakeDecl(std::move(name), ggml_type, std::move(ne), impl_->tensors));
  impl_->tensors.push_back(std::move(t));
  return absl::OkStatus();
}

absl::Status GgufWriter::Begin(const std::string& path) {
  Impl& w = *impl_;
  if (w.state != Impl::State::kDeclaring) {
    return absl::FailedPreconditionError(
        absl::StrCat("GgufWriter::Begin(", path, ") called twice"));
  }
  ST_ASSIGN_OR_RETURN(w.alignment, AlignmentOf(w.metadata));
  ST_ASSIGN_OR_RETURN(std::string header, Layout(w.metadata, w.tensors, 3, w.alignment));
  w.fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w.fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", path, " for writing"));
  w.path = path;
  w.state = Impl::State::kWriting;
  return w.WriteAll(header.data(), header.size());
}

absl::Status GgufWriter::WriteTensorData(std::string_view name, const void* bytes, size_t n) {
  Impl& w = *impl_;
  if (w.state != Impl::State::kWriting) {
    return absl::FailedPreconditionError(
        absl::StrCat("GgufWriter::WriteTensorData('", Sv(name), "') outside Begin()..Finish()"));
  }
  ST_RETURN_IF_ERROR(w.sticky);
  if (w.next >= w.tensors.size()) {
    return absl::FailedPreconditionError(absl::StrCat(w.path, ": tensor '", Sv(name),
                                                      "' written after all ", w.tensors.size(),
                                                      " declared tensors"));
  }
  const TensorDecl& t = w.tensors[w.next];
  if (name != t.name) {
    return absl::InvalidArgumentError(
        absl::StrCat(w.path, ": tensor '", Sv(name), "' written out of order; expected '", t.name,
                     "' (tensors are written in AddTensorInfo order)"));
  }
  if (n != t.n_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(w.path, ": tensor '", Sv(name), "' has ", t.n_bytes, " bytes, got ", n));
  }
  ST_RETURN_IF_ERROR(w.WriteAll(bytes, n));
  static constexpr char kZeros[256] = {};
  for (uint64_t pad = AlignUp(n, w.alignment) - n; pad > 0;) {
    const size_t chunk = std::min<uint64_t>(pad, sizeof(kZeros));
    ST_RETURN_IF_ERROR(w.WriteAll(kZeros, chunk));
    pad -= chunk;
  }
  ++w.next;
  return absl::OkStatus();
}

absl::Status GgufWriter::Finish() {
  Impl& w = *impl_;
  if (w.state != Impl::State::kWriting) {
    return absl::FailedPreconditionError("GgufWriter::Finish() without Begin() or called twice");
  }
  w.state = Impl::State::kFinished;
  if (w.sticky.ok() && w.next < w.tensors.size()) {
    (void)w.Fail(absl::FailedPreconditionError(
        absl::StrCat(w.path, ": only ", w.next, " of ", w.tensors.size(),
                     " tensors written; first missing '", w.tensors[w.next].name, "'")));
  }
  // On disk before the caller renames the file into place (synth): a crash
  // after the rename must not leave a file that looks whole but is not.
  if (w.sticky.ok() && w.fd >= 0 && ::fsync(w.fd) != 0) {
    (void)w.Fail(absl::ErrnoToStatus(errno, absl::StrCat("fsync ", w.path)));
  }
  absl::Status closed = w.Close();
  return w.sticky.ok() ? closed : w.sticky;
}

absl::StatusOr<std::string> GgufWriter::BuildInMemory(
    const std::vector<std::pair<std::string, GgufValue>>& metadata,
    const std::vector<GgufTensorInfo>& tensors, const std::vector<std::string>& data,
    uint32_t version) {
  if (version != 2 && version != 3) {
    return absl::InvalidArgumentError(absl::StrCat("cannot write GGUF version ", version));
  }
  if (data.size() != tensors.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(tensors.size(), " tensors but ", data.size(), " data buffers"));
  }
  std::vector<TensorDecl> decls;
  for (const GgufTensorInfo& t : tensors) {
    const uint32_t ggml_type = t.storage != nullptr ? t.ggml_type : static_cast<uint32_t>(t.type);
    ST_ASSIGN_OR_RETURN(TensorDecl d, MakeDecl(t.name, ggml_type, t.ne, decls));
    decls.push_back(std::move(d));
  }
  ST_ASSIGN_OR_RETURN(const uint64_t alignment, AlignmentOf(metadata));
  ST_ASSIGN_OR_RETURN(std::string out, Layout(metadata, decls, version, alignment));
  for (size_t i = 0; i < decls.size(); ++i) {
    if (data[i].size() != decls[i].n_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", decls[i].name, "' has ", decls[i].n_bytes, " bytes, got ", data[i].size()));
    }
    out.append(data[i]);
    out.resize(AlignUp(out.size(), alignment), '\0');
  }
  return out;
}

}  // namespace st
