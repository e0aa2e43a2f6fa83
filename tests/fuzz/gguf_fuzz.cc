// libFuzzer target for the GGUF reader. Parses the input with
// GgufFile::FromBuffer and, when it parses, touches every value and every
// tensor byte, checks the reader's invariants, and round-trips the result
// through GgufWriter::BuildInMemory (which must accept anything the reader
// accepts and reproduce the same metadata and tensor bytes). Any violation
// traps, so the fuzzer (and the corpus replay test) report it as a crash.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "model/gguf.h"

namespace st {
namespace {

volatile uint64_t g_sink = 0;  // keeps the tensor-byte reads alive

void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "gguf_fuzz invariant violated: %s\n", what);
    __builtin_trap();
  }
}

// Canonical text of a value; NaNs print as "nan" whatever their payload.
void Dump(const GgufArray& a, std::ostringstream& os);
void Dump(const GgufValue& v, std::ostringstream& os) {
  os << static_cast<uint32_t>(v.type) << ":" << v.v.index() << ":";
  if (const auto* x = std::get_if<int64_t>(&v.v)) os << *x;
  if (const auto* x = std::get_if<uint64_t>(&v.v)) os << *x;
  if (const auto* x = std::get_if<double>(&v.v)) os << *x;
  if (const auto* x = std::get_if<bool>(&v.v)) os << *x;
  if (const auto* x = std::get_if<std::string>(&v.v)) os << x->size() << "'" << *x;
  if (const auto* x = std::get_if<GgufArray>(&v.v)) Dump(*x, os);
}
void Dump(const GgufArray& a, std::ostringstream& os) {
  os << "[" << static_cast<uint32_t>(a.elem_type) << " " << a.size();
  for (int64_t x : a.ints) os << " " << x;
  for (uint64_t x : a.uints) os << " " << x;
  for (double x : a.floats) os << " " << x;
  for (const std::string& x : a.strings) os << " " << x.size() << "'" << x;
  for (const GgufArray& x : a.arrays) Dump(x, os);
  os << "]";
}

// Everything observable about a parsed file, tensor bytes included.
std::string Describe(const GgufFile& f) {
  std::ostringstream os;
  os.precision(17);
  os << "v" << f.version() << " a" << f.alignment() << "\n";
  for (const auto& [key, value] : f.metadata()) {
    os << key.size() << "'" << key << "=";
    Dump(value, os);
    os << "\n";
  }
  for (const GgufTensorInfo& t : f.tensors()) {
    os << t.name << " " << static_cast<uint32_t>(t.type) << "/" << t.ggml_type << " " << t.n_bytes;
    for (uint64_t d : t.ne) os << " " << d;
    os << " " << std::string_view(reinterpret_cast<const char*>(f.TensorData(t)), t.n_bytes)
       << "\n";
  }
  return os.str();
}

// Calls every getter on every key (conversions and range checks included).
void ExerciseGetters(const GgufFile& f) {
  for (const auto& [key, value] : f.metadata()) {
    Require(f.Find(key) == &value, "Find returns the entry");
    const absl::Status statuses[] = {f.GetUint32(key).status(),    f.GetUint64(key).status(),
                                     f.GetFloat32(key).status(),   f.GetBool(key).status(),
                                     f.GetString(key).status(),    f.GetStringArray(key).status(),
                                     f.GetInt32Array(key).status()};
    for (const absl::Status& s : statuses) {
      Require(s.ok() || s.code() == absl::StatusCode::kInvalidArgument, "getter error code");
    }
  }
  Require(f.GetUint32("\xff no such key").status().code() == absl::StatusCode::kNotFound,
          "missing key is NOT_FOUND");
}

void CheckTensors(const GgufFile& f) {
  Require(f.data_offset() <= f.file_size(), "data offset within file");
  for (const GgufTensorInfo& t : f.tensors()) {
    Require(f.FindTensor(t.name) == &t, "FindTensor returns the entry");
    Require(t.offset % f.alignment() == 0, "tensor offset aligned");
    // A storage-only tensor (Q6_K) is sized by its file type, not `type`.
    const uint32_t file_type = t.storage != nullptr ? t.ggml_type : static_cast<uint32_t>(t.type);
    Require(t.n_bytes == *GgufTensorBytes(file_type, t.ne), "n_bytes matches shape");
    Require(t.offset <= f.file_size() - f.data_offset() &&
                t.n_bytes <= f.file_size() - f.data_offset() - t.offset,
            "tensor data within file");
    uint64_t sum = 0;  // read every byte: ASan flags anything outside the buffer
    const uint8_t* p = f.TensorData(t);
    for (uint64_t i = 0; i < t.n_bytes; ++i) sum += p[i];
    g_sink = g_sink + sum;
  }
}

// Rebuilds the file with the writer; the rebuilt file must parse to the same
// description (twice: the second build must be byte-identical to the first).
void RoundTrip(const GgufFile& f) {
  std::vector<std::string> data;
  for (const GgufTensorInfo& t : f.tensors()) {
    data.emplace_back(reinterpret_cast<const char*>(f.TensorData(t)), t.n_bytes);
  }
  absl::StatusOr<std::string> rebuilt =
      GgufWriter::BuildInMemory(f.metadata(), f.tensors(), data, f.version());
  if (!rebuilt.ok()) std::fprintf(stderr, "%s\n", rebuilt.status().ToString().c_str());
  Require(rebuilt.ok(), "writer accepts what the reader accepted");
  absl::StatusOr<std::unique_ptr<GgufFile>> again = GgufFile::FromBuffer(*rebuilt);
  if (!again.ok()) std::fprintf(stderr, "%s\n", again.status().ToString().c_str());
  Require(again.ok(), "reader accepts what the writer wrote");
  Require(Describe(**again) == Describe(f), "round trip preserves metadata and tensors");
  absl::StatusOr<std::string> twice =
      GgufWriter::BuildInMemory((*again)->metadata(), (*again)->tensors(), data, f.version());
  Require(twice.ok() && *twice == *rebuilt, "writer output is canonical");
}

}  // namespace
}  // namespace st

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using st::Require;
  absl::StatusOr<std::unique_ptr<st::GgufFile>> f =
      st::GgufFile::FromBuffer(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!f.ok()) {
    Require(f.status().code() == absl::StatusCode::kInvalidArgument, "errors are INVALID_ARGUMENT");
    Require(f.status().message().substr(0, 10) == "<memory>: ", "errors name the path");
    return 0;
  }
  st::ExerciseGetters(**f);
  st::CheckTensors(**f);
  st::RoundTrip(**f);
  return 0;
}
