#include "storage/expert_pack.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"
#include "kernels/packed_matrix.h"
#include "common/status_macros.h"
#include "model/config.h"
#include "xxhash.h"

namespace st {
namespace {

static_assert(std::endian::native == std::endian::little, "pack I/O assumes a little-endian host");

constexpr size_t kOffVersion = 8, kOffType = 12, kOffFingerprint = 16, kOffLayers = 24,
                 kOffExperts = 28, kOffDModel = 32, kOffDExpert = 36, kOffMatrixBytes = 40,
                 kOffStride = 48, kOffRecordSize = 56, kOffRecordCount = 64, kOffTable = 72,
                 kOffRecords = 80, kOffFileSize = 88, kOffFlags = 96, kOffHeaderSum = 104;

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
  h.record_count = uint64_t{n_layers} * n_experts;
  h.checksum_table_offset = kPackHeaderBytes;
  h.records_offset = AlignUp(kPackHeaderBytes + 8 * h.record_count, kPackAlignment);
  h.file_size = h.records_offset + h.record_count * h.record_size;
  return h;
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
  std::memcpy(s.data() + h.checksum_table_offset, checksums.data(), 8 * checksums.size());
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, s.data(), kOffHeaderSum);
  XXH3_64bits_update(st, checksums.data(), 8 * checksums.size());
  Put<uint64_t>(s, kOffHeaderSum, XXH3_64bits_digest(st));
  XXH3_freeState(st);
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

uint64_t RecordChecksum(const void* data, size_t n) { return XXH3_64bits(data, n); }

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
  auto h = PackHeader::Make(*type, Get<uint64_t>(s, kOffFingerprint), Get<uint32_t>(s, kOffLayers),
                            Get<uint32_t>(s, kOffExperts), Get<uint32_t>(s, kOffDModel),
                            Get<uint32_t>(s, kOffDExpert), Get<uint32_t>(s, kOffFlags));
  if (!h.ok()) return bad(std::string(h.status().message()));
  const std::pair<size_t, uint64_t> derived[] = {
      {kOffMatrixBytes, h->matrix_bytes}, {kOffStride, h->matrix_stride},
      {kOffRecordSize, h->record_size},   {kOffRecordCount, h->record_count},
      {kOffTable, h->checksum_table_offset}, {kOffRecords, h->records_offset},
      {kOffFileSize, h->file_size}};
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
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, s.data(), kOffHeaderSum);
  XXH3_64bits_update(st, pack->checksums_.data(), 8 * pack->checksums_.size());
  const uint64_t sum = XXH3_64bits_digest(st);
  XXH3_freeState(st);
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
  const uint64_t got = RecordChecksum(data, header_.record_size);
  const uint64_t want = checksum(layer, expert);
  if (got == want) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat(
      path_, ": checksum mismatch in record of layer ", layer, " expert ", expert, " (offset ",
      header_.RecordOffset(layer, expert), ", stored ", Hex(want), ", computed ", Hex(got),
      "); the pack is corrupt: re-run `smallthinker convert`"));
}

}  // namespace st
