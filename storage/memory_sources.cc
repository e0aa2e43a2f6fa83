// The synchronous sources: mmap (copies out of a read-only mapping) and
// in-memory (the whole pack loaded once). Reads complete inside Submit.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/fault_safe_copy.h"
#include "common/process_memory.h"
#include "common/status_macros.h"
#include "storage/source_internal.h"

namespace st {
namespace {

// Serves records from `base` (the pack image from offset 0). With `fd` >= 0
// (mmap), `base` maps that file: each read first checks the file still
// holds the record (a pack truncated after open), and copies it with
// CopyUnlessSigbus (one cut between the check and the copy faults the copy
// with SIGBUS, which had killed the process), and
// the copied pages (and the neighbours fault-around mapped with them) are
// then dropped from this process, so its RSS counts the cache's copy only
// (a --memory-budget holds). Thread-safe.
class SyncSource : public ExpertSource {
 public:
  SyncSource(std::shared_ptr<const ExpertPack> pack, std::string_view name, const char* base,
             int fd, std::function<void()> release)
      : ExpertSource(std::move(pack)),
        name_(name),
        base_(base),
        fd_(fd),
        release_(std::move(release)) {}
  ~SyncSource() override { release_(); }
  std::string_view name() const override { return name_; }
  absl::Status Wait(ReadId id) override { return table_.Wait(id); }
  bool Poll(ReadId id) override { return table_.Poll(id); }

 protected:
  std::vector<ReadId> SubmitValid(absl::Span<const ReadRequest> requests) override {
    std::vector<ReadId> ids;
    const PackHeader& h = pack_->header();
    for (const ReadRequest& r : requests) {
      const ReadId id = table_.Add();
      ids.push_back(id);
      table_.Complete(id, internal::ReadVerified(*pack_, r, [&]() -> absl::Status {
                        const uint64_t offset = h.RecordOffset(r.layer, r.expert);
                        const char* src = base_ + offset;
                        if (fd_ >= 0) {
                          struct stat info;
                          if (fstat(fd_, &info) != 0) {
                            return absl::InternalError(absl::StrCat(
                                pack_->path(), ": fstat: ", std::strerror(errno)));
                          }
                          if (static_cast<uint64_t>(info.st_size) < offset + h.record_size) {
                            return absl::DataLossError(absl::StrCat(
                                pack_->path(), ": end of file at offset ", info.st_size,
                                " before the record at ", offset, " (pack truncated after open?)"));
                          }
                        }
                        if (fd_ < 0) {
                          std::memcpy(r.dst, src, h.record_size);
                        } else if (!CopyUnlessSigbus(r.dst, src, h.record_size)) {
                          return absl::DataLossError(absl::StrCat(
                              pack_->path(), ": the record at ", offset,
                              " was cut while it was copied (pack truncated after open?)"));
                        }
                        if (fd_ >= 0) {
                          // The copy's faults also map whatever of the fault-around
                          // window (64 KiB by default, as for the embedding rows in
                          // offload.cc) the page cache holds: neighbouring records,
                          // which would stay in RSS. Drop those too.
                          constexpr uint64_t kFaultAround = 64 << 10;
                          const uint64_t lo = offset > kFaultAround ? offset - kFaultAround : 0;
                          const uint64_t hi =
                              std::min<uint64_t>(offset + h.record_size + kFaultAround, h.file_size);
                          ReleaseWholePages(base_ + lo, hi - lo);
                        }
                        return absl::OkStatus();
                      }));
    }
    return ids;
  }

 private:
  std::string_view name_;
  const char* base_;
  int fd_;
  std::function<void()> release_;
  internal::CompletionTable table_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ExpertSource>> OpenMmapSource(
    std::shared_ptr<const ExpertPack> pack) {
  const std::string& path = pack->path();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat(path, ": open: ", std::strerror(errno)));
  const size_t size = pack->header().file_size;
  void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  const int err = errno;
  if (p == MAP_FAILED) {
    close(fd);
    return absl::InternalError(absl::StrCat(path, ": mmap of ", size, " bytes: ", std::strerror(err)));
  }
  return std::unique_ptr<ExpertSource>(
      new SyncSource(std::move(pack), "mmap", static_cast<const char*>(p), fd, [p, size, fd] {
        munmap(p, size);
        close(fd);
      }));
}

absl::StatusOr<std::unique_ptr<ExpertSource>> OpenMemorySource(
    std::shared_ptr<const ExpertPack> pack) {
  const PackHeader& h = pack->header();
  char* buf = static_cast<char*>(std::aligned_alloc(kPackAlignment, h.file_size));
  if (buf == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat(pack->path(), ": cannot allocate ", h.file_size, " bytes for the pack"));
  }
  std::memset(buf, 0, h.records_offset);
  int fd = open(pack->path().c_str(), O_RDONLY | O_CLOEXEC);
  absl::Status s = fd < 0 ? absl::InternalError(absl::StrCat(pack->path(), ": open: ",
                                                             std::strerror(errno)))
                          : internal::PreadFull(fd, buf + h.records_offset,
                                                h.file_size - h.records_offset, h.records_offset,
                                                pack->path());
  if (fd >= 0) close(fd);
  if (!s.ok()) {
    std::free(buf);
    return s;
  }
  return std::unique_ptr<ExpertSource>(
      new SyncSource(std::move(pack), "memory", buf, /*fd=*/-1, [buf] { std::free(buf); }));
}

}  // namespace st
