#include "storage/expert_source.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace st {

absl::StatusOr<std::vector<ReadId>> ExpertSource::Submit(absl::Span<const ReadRequest> requests) {
  for (const ReadRequest& r : requests) {
    ST_RETURN_IF_ERROR(pack_->CheckIndex(r.layer, r.expert));
    if (r.dst == nullptr || reinterpret_cast<uintptr_t>(r.dst) % kPackAlignment != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "read of layer ", r.layer, " expert ", r.expert, ": destination buffer must be ",
          kPackAlignment, "-byte aligned and non-null"));
    }
  }
  return SubmitValid(requests);
}

absl::Status ExpertSource::Read(int layer, int expert, void* dst) {
  const ReadRequest r{.layer = layer, .expert = expert, .dst = dst};
  ST_ASSIGN_OR_RETURN(std::vector<ReadId> ids, Submit({&r, 1}));
  return Wait(ids[0]);
}

absl::Status ExpertSource::RegisterMemory(char* /*base*/, uint64_t /*bytes*/) {
  return absl::OkStatus();  // nothing to gain: pread, mmap and memory copy
}

std::string_view SourceKindName(SourceKind kind) {
  switch (kind) {
    case SourceKind::kAuto: return "auto";
    case SourceKind::kIoUring: return "io_uring";
    case SourceKind::kPread: return "pread";
    case SourceKind::kMmap: return "mmap";
    case SourceKind::kMemory: return "memory";
  }
  return "unknown";
}

absl::StatusOr<SourceKind> ParseSourceKind(std::string_view name) {
  for (SourceKind k : {SourceKind::kAuto, SourceKind::kIoUring, SourceKind::kPread,
                       SourceKind::kMmap, SourceKind::kMemory}) {
    if (absl::AsciiStrToLower(std::string(name)) == SourceKindName(k)) return k;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown expert source '", std::string(name), "' (choose auto, io_uring, pread, mmap or memory)"));
}

absl::StatusOr<std::unique_ptr<ExpertSource>> OpenExpertSource(
    std::shared_ptr<const ExpertPack> pack, const SourceOptions& options) {
  switch (options.kind) {
    case SourceKind::kIoUring: return OpenIoUringSource(std::move(pack), options);
    case SourceKind::kPread: return OpenPreadSource(std::move(pack), options);
    case SourceKind::kMmap: return OpenMmapSource(std::move(pack));
    case SourceKind::kMemory: return OpenMemorySource(std::move(pack));
    case SourceKind::kAuto: break;
  }
  auto ring = OpenIoUringSource(pack, options);
  if (ring.ok()) return ring;
  LOG(WARNING) << "io_uring unavailable (" << ring.status().message()
               << "); reading experts with a pool of " << options.pread_threads
               << " pread threads instead";
  return OpenPreadSource(std::move(pack), options);
}

}  // namespace st
