// The synchronous sources: mmap (copies out of a read-only mapping) and
// in-memory (the whole pack loaded once). Reads complete inside Submit.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "storage/source_internal.h"

namespace st {
namespace {

// Serves records from `base` (the pack image from offset 0). Thread-safe.
class SyncSource : public ExpertSource {
 public:
  SyncSource(std::shared_ptr<const ExpertPack> pack, std::string_view name, const char* base,
             std::function<void()> release)
      : ExpertSource(std::move(pack)), name_(name), base_(base), release_(std::move(release)) {}
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
      table_.Complete(id, internal::ReadVerified(*pack_, r, [&] {
                        std::memcpy(r.dst, base_ + h.RecordOffset(r.layer, r.expert),
                                    h.record_size);
                        return absl::OkStatus();
                      }));
    }
    return ids;
  }

 private:
  std::string_view name_;
  const char* base_;
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
  close(fd);
  if (p == MAP_FAILED) {
    return absl::InternalError(absl::StrCat(path, ": mmap of ", size, " bytes: ", std::strerror(err)));
  }
  return std::unique_ptr<ExpertSource>(new SyncSource(
      std::move(pack), "mmap", static_cast<const char*>(p), [p, size] { munmap(p, size); }));
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
      new SyncSource(std::move(pack), "memory", buf, [buf] { std::free(buf); }));
}

}  // namespace st
