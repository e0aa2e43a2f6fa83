#include "storage/expert_pack.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"
#include "kernels/kquant_dot.h"
#include "kernels/packed_kquant.h"
#include "kernels/packed_matrix.h"
#include "common/status_macros.h"
#include "model/config.h"
#include "model/weights.h"
#include "xxhash.h"
#if defined(ST_HAVE_XXH3_DISPATCH)
#define XXH_DISPATCH_DISABLE_REPLACE  // only RecordChecksum calls the dispatch
#include "xxh_x86dispatch.h"
#endif

namespace st {
namespace {

static_assert(std::endian::native == std::endian::little, "pack I/O assumes a little-endian host");

constexpr size_t kOffVersion = 8, kOffType = 12, kOffFingerprint = 16, kOffLayers = 24,
                 kOffExperts = 28, kOffDModel = 32, kOffDExpert = 36, kOffMatrixBytes = 40,
                 kOffStride = 48, kOffRecordSize = 56, kOffRecordCount = 64, kOffTable = 72,
                 kOffRecords = 80, kOffFileSize = 88, kOffFlags = 96, kOffHeaderSum = 104,
                 kOffUpOffset = 112, kOffDownOffset = 120;
// Header bytes [kOffStoredFrom, kPackHeaderBytes) join the header checksum in
// an as-stored pack.
constexpr size_t kOffStoredFrom = 112;

// XXH3-64 of the header's checksummed bytes and the checksum table.
uint64_t HeaderChecksum(const std::string& s, bool as_stored, const uint64_t* table, size_t n) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, s.data(), kOffHeaderSum);
  if (as_stored) XXH3_64bits_update(st, s.data() + kOffStoredFrom, kPackHeaderBytes - kOffStoredFrom);
  XXH3_64bits_update(st, table, 8 * n);
  const uint64_t sum = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return sum;
}

template <typename T>
void Put(std::string& s, size_t off, T v) {
  std::memcpy(s.data() + off, &v, sizeof(T));
}
template <typename T>
T Get(const std::string& s, size_t off) {
  T v;
  std::memcpy(&v, s.data() + off, sizeof(T));
  return v;
}

std::string Hex(uint64_t x) { return absl::StrFormat("%016x", x); }

absl::Status ReadFull(int fd, void* dst, size_t n, uint64_t offset, const std::string& path) {
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    ssize_t r = pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      return absl::InternalError(absl::StrCat(path, ": pread at offset ", offset, ": ",
                                              std::strerror(errno)));
    }
    if (r == 0) {
      return absl::DataLossError(absl::StrCat(path, ": unexpected end of file at offset ", offset));
    }
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PackHeader> PackHeader::Make(DType type, uint64_t fingerprint, uint32_t n_layers,
                                            uint32_t n_experts, uint32_t d_model,
                                            uint32_t d_expert, uint32_t flags) {
  // Limits far above any SmallThinker model keep every size below 2^62.
  constexpr uint32_t kMaxCount = 1 << 14, kMaxDim = 1 << 18;
  if ((flags & kPackFlagGatePackedV1) != 0) {
    return absl::FailedPreconditionError(
        "pack stores its gate in the 16-row layout of an older build (scales ahead of the "
        "levels); re-run `smallthinker convert` to rewrite it in the current layout");
  }
  if (n_layers == 0 || n_experts == 0 || d_model == 0 || d_expert == 0 ||
      n_layers > kMaxCount || n_experts > kMaxCount || d_model > kMaxDim || d_expert > kMaxDim ||
      uint64_t{n_layers} * n_experts > (1u << 20) || d_model % BlockElems(type) != 0 ||
      (flags & ~kPackKnownFlags) != 0 ||
      (flags & (kPackFlagAsStored | kPackFlagKQuantPacked)) != 0 ||  // MakeAsStored's
      ((flags & kPackFlagGatePacked) != 0 &&
       ((type != DType::kQ4_0 && type != DType::kQ8_0) || d_expert % kPackRows != 0)) ||
      ((flags & kPackFlagUpSplit) != 0 && type != DType::kQ4_0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pack dimensions invalid: n_layers ", n_layers, ", n_experts ", n_experts, ", d_model ",
        d_model, ", d_expert ", d_expert, ", type ", std::string(DTypeName(type)), ", flags ",
        flags));
  }
  PackHeader h;
  h.expert_type = type;
  h.fingerprint = fingerprint;
  h.n_layers = n_layers;
  h.n_experts = n_experts;
  h.d_model = d_model;
  h.d_expert = d_expert;
  h.flags = flags;
  h.matrix_bytes = uint64_t{d_expert} * RowBytes(type, d_model);
  h.matrix_stride = AlignUp(h.matrix_bytes, kPackAlignment);
  h.record_size = 3 * h.matrix_stride;
  for (int m = 0; m < 3; ++m) h.matrix_offset[m] = m * h.matrix_stride;
  h.record_count = uint64_t{n_layers} * n_experts;
  h.checksum_table_offset = kPackHeaderBytes;
  h.records_offset = AlignUp(kPackHeaderBytes + 8 * h.record_count, kPackAlignment);
  h.file_size = h.records_offset + h.record_count * h.record_size;
  return h;
}

absl::StatusOr<PackHeader> PackHeader::MakeAsStored(uint64_t fingerprint, uint32_t n_layers,
                                                    uint32_t n_experts, uint32_t d_model,
                                                    uint32_t d_expert,
                                                    std::vector<uint32_t> stored_types,
                                                    bool kquant_packed) {
  // The Q8_0 shape checks the dimensions; the types then size the record.
  ST_ASSIGN_OR_RETURN(PackHeader h, Make(DType::kQ8_0, fingerprint, n_layers, n_experts, d_model,
                                         d_expert, /*flags=*/0));
  if (n_layers > (kPackHeaderBytes - kPackStoredTypesOffset) / 3 ||
      stored_types.size() != 3ull * n_layers || d_model % 256 != 0 || d_expert % 256 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pack of experts as stored: ", stored_types.size(), " types for ", n_layers,
        " layers, d_model ", d_model, ", d_expert ", d_expert,
        " (needs 3 types per layer, at most 1194 layers, whole 256-weight rows)"));
  }
  for (uint32_t t : stored_types) {
    const StorageFormat* f = FindStorageFormat(t);
    if (f == nullptr || !KQuantDotSupported(t)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pack of experts as stored: ggml type ", t, f != nullptr ? absl::StrCat(" (", f->name, ")") : "",
          " is not one this build computes as stored (Q4_K, Q6_K)"));
    }
  }
  h.flags = kPackFlagAsStored | (kquant_packed ? kPackFlagKQuantPacked : 0u);
  h.stored_types = std::move(stored_types);
  uint64_t largest[3] = {0, 0, 0};
  for (uint32_t l = 0; l < n_layers; ++l) {
    for (int m = 0; m < 3; ++m) largest[m] = std::max(largest[m], h.MatrixBytes(l, m));
  }
  h.matrix_bytes = std::max({largest[0], largest[1], largest[2]});
  h.matrix_stride = AlignUp(h.matrix_bytes, kPackAlignment);
  h.matrix_offset[0] = 0;
  h.matrix_offset[1] = AlignUp(largest[0], kPackAlignment);
  h.matrix_offset[2] = h.matrix_offset[1] + AlignUp(largest[1], kPackAlignment);
  h.record_size = h.matrix_offset[2] + AlignUp(largest[2], kPackAlignment);
  h.file_size = h.records_offset + h.record_count * h.record_size;
  return h;
}

uint64_t PackHeader::MatrixBytes(int layer, int m) const {
  if (!as_stored()) return matrix_bytes;
  const StorageFormat* f = FindStorageFormat(stored_types[3 * layer + m]);
  // gate and up [d_expert, d_model]; down [d_model, d_expert]: the same count.
  return uint64_t{d_model} * d_expert / f->block_elems * f->block_bytes;
}

std::string PackHeader::TypeNames() const {
  if (!as_stored()) return std::string(DTypeName(expert_type));
  std::vector<uint32_t> types = stored_types;
  std::sort(types.begin(), types.end());
  types.erase(std::unique(types.begin(), types.end()), types.end());
  std::string out;
  for (uint32_t t : types) absl::StrAppend(&out, out.empty() ? "" : ", ", FindStorageFormat(t)->name);
  return out;
}

MatrixRef PackHeader::RecordMatrix(const char* record, int layer, int m) const {
  MatrixRef out{.type = expert_type,
                .data = record + matrix_offset[m],
                .rows = d_expert,
                .cols = d_model};
  if (as_stored()) {
    out.storage = FindStorageFormat(stored_types[3 * layer + m]);
    if (m == 2) std::swap(out.rows, out.cols);  // down as the GGUF holds it
    if (m != 1 && (flags & kPackFlagKQuantPacked) != 0 &&
        PackableKQuantShape(out.storage->ggml_type, out.rows, out.cols)) {
      out.packed_kquant = out.data;  // 16-row layout only: no row-major view
      out.data = nullptr;
    }
    return out;
  }
  if (m == 0 && (flags & kPackFlagGatePacked) != 0) {
    out.packed = out.data;  // 16-row layout only: no row-major view
    out.data = nullptr;
  }
  out.split_rows = m == 1 && (flags & kPackFlagUpSplit) != 0;
  return out;
}

std::string SerializePackPrefix(const PackHeader& h, const std::vector<uint64_t>& checksums) {
  std::string s(h.records_offset, '\0');
  std::memcpy(s.data(), kPackMagic, sizeof(kPackMagic));
  Put<uint32_t>(s, kOffVersion, h.version);
  Put<uint32_t>(s, kOffType, static_cast<uint32_t>(h.expert_type));
  Put<uint64_t>(s, kOffFingerprint, h.fingerprint);
  Put<uint32_t>(s, kOffLayers, h.n_layers);
  Put<uint32_t>(s, kOffExperts, h.n_experts);
  Put<uint32_t>(s, kOffDModel, h.d_model);
  Put<uint32_t>(s, kOffDExpert, h.d_expert);
  Put<uint64_t>(s, kOffMatrixBytes, h.matrix_bytes);
  Put<uint64_t>(s, kOffStride, h.matrix_stride);
  Put<uint64_t>(s, kOffRecordSize, h.record_size);
  Put<uint64_t>(s, kOffRecordCount, h.record_count);
  Put<uint64_t>(s, kOffTable, h.checksum_table_offset);
  Put<uint64_t>(s, kOffRecords, h.records_offset);
  Put<uint64_t>(s, kOffFileSize, h.file_size);
  Put<uint32_t>(s, kOffFlags, h.flags);
  if (h.as_stored()) {
    Put<uint64_t>(s, kOffUpOffset, h.matrix_offset[1]);
    Put<uint64_t>(s, kOffDownOffset, h.matrix_offset[2]);
    for (size_t i = 0; i < h.stored_types.size(); ++i) {
      s[kPackStoredTypesOffset + i] = static_cast<char>(h.stored_types[i]);
    }
  }
  std::memcpy(s.data() + h.checksum_table_offset, checksums.data(), 8 * checksums.size());
  Put<uint64_t>(s, kOffHeaderSum,
                HeaderChecksum(s, h.as_stored(), checksums.data(), checksums.size()));
  return s;
}

uint64_t GgufFingerprint(const GgufFile& gguf) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, gguf.base(), gguf.data_offset());
  const uint64_t size = gguf.file_size();
  XXH3_64bits_update(st, &size, sizeof(size));
  for (const GgufTensorInfo& t : gguf.tensors()) {
    XXH3_64bits_update(st, gguf.TensorData(t), std::min<uint64_t>(t.n_bytes, 4096));
  }
  const uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}

uint64_t GgufContentSample(const GgufFile& gguf) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  constexpr uint64_t kSample = 4096;
  for (const GgufTensorInfo& t : gguf.tensors()) {
    if (t.n_bytes <= kSample) continue;  // the fingerprint read it whole
    const auto* data = static_cast<const uint8_t*>(gguf.TensorData(t));
    const uint64_t middle = std::max<uint64_t>(kSample, t.n_bytes / 2 - kSample / 2);
    XXH3_64bits_update(st, data + middle, std::min<uint64_t>(kSample, t.n_bytes - middle));
    XXH3_64bits_update(st, data + t.n_bytes - kSample, kSample);
  }
  const uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}

uint64_t RecordChecksum(const void* data, size_t n) {
#if defined(ST_HAVE_XXH3_DISPATCH)
  // libxxhash's run-time dispatch (AVX-512/AVX2/SSE2; storage/CMakeLists.txt
  // checks it links) where the default x86 entry point is SSE2 only: from
  // DRAM 14.3 against 8.2-8.7 GB/s on session 30's host, and the reaper
  // verifies every record before a stalled layer may use it. Same hash
  // (RecordChecksumTest.KnownValues).
  return XXH3_64bits_dispatch(data, n);
#else
  return XXH3_64bits(data, n);
#endif
}

RecordHasher::RecordHasher() : state_(XXH3_createState()) {
  if (state_ == nullptr) throw std::bad_alloc();  // as any other allocation here
  Reset();
}

RecordHasher::~RecordHasher() { XXH3_freeState(state_); }

void RecordHasher::Reset() { XXH3_64bits_reset(state_); }

void RecordHasher::Update(const void* data, size_t n) {
#if defined(ST_HAVE_XXH3_DISPATCH)
  XXH3_64bits_update_dispatch(state_, data, n);  // as RecordChecksum
#else
  XXH3_64bits_update(state_, data, n);
#endif
}

uint64_t RecordHasher::Digest() const { return XXH3_64bits_digest(state_); }

std::string DefaultPackPath(const std::string& gguf_path) { return gguf_path + ".stpack"; }

absl::StatusOr<std::shared_ptr<const ExpertPack>> ExpertPack::Open(const std::string& path) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a valid expert pack: ", what));
  };
  // O_NONBLOCK: a FIFO must not block the open (waiting for a writer)
  // before it is refused as not a regular file; regular files ignore it.
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    std::string msg = absl::StrCat(path, ": cannot open expert pack: ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::InternalError(msg);
  }
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  struct stat sb;
  if (fstat(fd, &sb) != 0) return absl::InternalError(absl::StrCat(path, ": fstat failed"));
  if (!S_ISREG(sb.st_mode)) return bad("not a regular file");
  const uint64_t actual = static_cast<uint64_t>(sb.st_size);
  if (actual < kPackHeaderBytes) {
    if (actual >= sizeof(kPackMagic)) {
      char magic[8];
      ST_RETURN_IF_ERROR(ReadFull(fd, magic, 8, 0, path));
      if (std::memcmp(magic, kPackMagic, 8) != 0) return bad("wrong magic");
    }
    return absl::DataLossError(absl::StrCat(path, ": expert pack truncated: ", actual,
                                            " bytes, shorter than its ", kPackHeaderBytes,
                                            "-byte header (re-run `smallthinker convert`)"));
  }
  std::string s(kPackHeaderBytes, '\0');
  ST_RETURN_IF_ERROR(ReadFull(fd, s.data(), s.size(), 0, path));
  if (std::memcmp(s.data(), kPackMagic, 8) != 0) return bad("wrong magic");
  if (Get<uint32_t>(s, kOffVersion) != kPackVersion) {
    return bad(absl::StrCat("version ", Get<uint32_t>(s, kOffVersion), " (this build reads ",
                            kPackVersion, ")"));
  }
  auto type = DTypeFromGgml(Get<uint32_t>(s, kOffType));
  if (!type.ok()) return bad(std::string(type.status().message()));
  const uint32_t flags = Get<uint32_t>(s, kOffFlags);
  const uint32_t n_layers = Get<uint32_t>(s, kOffLayers);
  absl::StatusOr<PackHeader> h;
  if ((flags & kPackFlagAsStored) != 0) {
    const bool packed = (flags & kPackFlagKQuantPacked) != 0;
    if ((flags & ~kPackFlagKQuantPacked) != kPackFlagAsStored || *type != DType::kQ8_0 ||
        n_layers > (kPackHeaderBytes - kPackStoredTypesOffset) / 3) {
      return bad(absl::StrCat("as-stored pack with flags ", flags, ", type ",
                              std::string(DTypeName(*type)), ", ", n_layers, " layers"));
    }
    std::vector<uint32_t> types(3ull * n_layers);
    for (size_t i = 0; i < types.size(); ++i) {
      types[i] = static_cast<uint8_t>(s[kPackStoredTypesOffset + i]);
    }
    h = PackHeader::MakeAsStored(Get<uint64_t>(s, kOffFingerprint), n_layers,
                                 Get<uint32_t>(s, kOffExperts), Get<uint32_t>(s, kOffDModel),
                                 Get<uint32_t>(s, kOffDExpert), std::move(types), packed);
    // The layout this CPU computes the experts in RAM in, or the offloaded
    // ones would give other numbers (and a packed layout without its
    // kernel would run on the scalar twin).
    if (h.ok() && packed != PackedKQuantKernelsHere()) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, ": expert pack holds its K-quant gates and downs ",
          packed ? "in the 16-row packed layout, which this CPU has no kernel for (it needs AVX2 "
                   "or AVX-512)"
                 : "in rows (a pack of an older build, or converted on a CPU without AVX2 or "
                   "AVX-512), where this CPU computes them in the 16-row packed layout",
          "; re-run `smallthinker convert` on this machine to rewrite it"));
    }
  } else {
    h = PackHeader::Make(*type, Get<uint64_t>(s, kOffFingerprint), n_layers,
                         Get<uint32_t>(s, kOffExperts), Get<uint32_t>(s, kOffDModel),
                         Get<uint32_t>(s, kOffDExpert), flags);
  }
  if (!h.ok()) return bad(std::string(h.status().message()));
  std::vector<std::pair<size_t, uint64_t>> derived = {
      {kOffMatrixBytes, h->matrix_bytes}, {kOffStride, h->matrix_stride},
      {kOffRecordSize, h->record_size},   {kOffRecordCount, h->record_count},
      {kOffTable, h->checksum_table_offset}, {kOffRecords, h->records_offset},
      {kOffFileSize, h->file_size}};
  if (h->as_stored()) {
    derived.push_back({kOffUpOffset, h->matrix_offset[1]});
    derived.push_back({kOffDownOffset, h->matrix_offset[2]});
  }
  for (const auto& [off, want] : derived) {
    if (Get<uint64_t>(s, off) != want) {
      return bad(absl::StrCat("header field at byte ", off, " is ", Get<uint64_t>(s, off),
                              ", dimensions imply ", want));
    }
  }
  if (actual < h->file_size) {
    return absl::DataLossError(absl::StrCat(
        path, ": expert pack truncated: ", actual, " bytes, header says ", h->file_size,
        " (an interrupted copy? re-run `smallthinker convert`)"));
  }
  if (actual > h->file_size) {
    return bad(absl::StrCat("file has ", actual, " bytes, header says ", h->file_size));
  }
  auto pack = std::shared_ptr<ExpertPack>(new ExpertPack());
  pack->path_ = path;
  pack->header_ = *h;
  pack->checksums_.resize(h->record_count);
  ST_RETURN_IF_ERROR(ReadFull(fd, pack->checksums_.data(), 8 * h->record_count,
                              h->checksum_table_offset, path));
  const uint64_t sum =
      HeaderChecksum(s, h->as_stored(), pack->checksums_.data(), pack->checksums_.size());
  if (sum != Get<uint64_t>(s, kOffHeaderSum)) {
    return absl::DataLossError(absl::StrCat(path, ": expert pack header checksum mismatch (stored ",
                                            Hex(Get<uint64_t>(s, kOffHeaderSum)), ", computed ",
                                            Hex(sum), "); re-run `smallthinker convert`"));
  }
  return std::shared_ptr<const ExpertPack>(std::move(pack));
}

absl::StatusOr<std::shared_ptr<const ExpertPack>> ExpertPack::OpenFor(const std::string& path,
                                                                      const GgufFile& gguf) {
  ST_ASSIGN_OR_RETURN(auto pack, Open(path));
  const uint64_t want = GgufFingerprint(gguf);
  const PackHeader& h = pack->header();
  if (h.fingerprint != want) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": expert pack belongs to another model: pack fingerprint ", Hex(h.fingerprint),
        ", ", gguf.path(), " has fingerprint ", Hex(want),
        ". HINT: re-run `smallthinker convert ", gguf.path(), "`"));
  }
  ST_ASSIGN_OR_RETURN(ModelConfig c, LoadModelConfig(gguf));
  if (static_cast<int>(h.n_layers) != c.n_layers || static_cast<int>(h.n_experts) != c.n_experts ||
      static_cast<int>(h.d_model) != c.d_model || static_cast<int>(h.d_expert) != c.d_expert ||
      h.expert_type != c.expert_type) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": expert pack dimensions differ from ", gguf.path()));
  }
  if (h.as_stored()) {
    // The fingerprint covers the tensor infos, so this holds for any pack
    // convert wrote; a pack edited by hand (types and checksum) must not
    // make the kernels read one format as another.
    ST_ASSIGN_OR_RETURN(std::vector<ExpertStacks> stacks, LoadExpertStacks(gguf, c));
    for (int l = 0; l < c.n_layers; ++l) {
      const MatrixRef* ms[3] = {&stacks[l].gate, &stacks[l].up, &stacks[l].down};
      for (int m = 0; m < 3; ++m) {
        if (stacks[l].down_transposed || ms[m]->storage == nullptr ||
            ms[m]->storage->ggml_type != h.stored_types[3 * l + m]) {
          return absl::FailedPreconditionError(absl::StrCat(
              path, ": expert pack types differ from ", gguf.path(), " at layer ", l,
              ". HINT: re-run `smallthinker convert ", gguf.path(), "`"));
        }
      }
    }
  }
  // The fingerprint hashes only the first 4 KiB of each tensor: a GGUF
  // whose weights were edited further in, after convert, still matches. A
  // model file newer than its pack is worth saying so.
  struct stat model_stat, pack_stat;
  if (stat(gguf.path().c_str(), &model_stat) == 0 && stat(path.c_str(), &pack_stat) == 0 &&
      model_stat.st_mtime > pack_stat.st_mtime) {
    LOG(WARNING) << gguf.path() << " was modified after its expert pack " << path
                 << " was written; if its weights changed, re-run `smallthinker convert "
                 << gguf.path() << "` (the pack is matched by a fingerprint that does not read "
                 << "every byte)";
  }
  return pack;
}

absl::Status ExpertPack::CheckIndex(int layer, int expert) const {
  if (layer < 0 || expert < 0 || layer >= static_cast<int>(header_.n_layers) ||
      expert >= static_cast<int>(header_.n_experts)) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": no record for layer ", layer,
                                                   " expert ", expert, " (pack has ",
                                                   header_.n_layers, " layers x ",
                                                   header_.n_experts, " experts)"));
  }
  return absl::OkStatus();
}

absl::Status ExpertPack::VerifyRecord(int layer, int expert, const void* data) const {
  return CheckChecksum(layer, expert, RecordChecksum(data, header_.record_size));
}

absl::Status ExpertPack::CheckChecksum(int layer, int expert, uint64_t got) const {
  const uint64_t want = checksum(layer, expert);
  if (got == want) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat(
      path_, ": checksum mismatch in record of layer ", layer, " expert ", expert, " (offset ",
      header_.RecordOffset(layer, expert), ", stored ", Hex(want), ", computed ", Hex(got),
      "); the pack is corrupt: re-run `smallthinker convert`"));
}

}  // namespace st
