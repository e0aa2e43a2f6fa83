#include "storage/source_internal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace st::internal {

ReadId CompletionTable::Add() {
  absl::MutexLock lock(&mu_);
  const ReadId id = next_++;
  entries_.emplace(id, Entry{});
  ++pending_;
  return id;
}

void CompletionTable::Complete(ReadId id, absl::Status status) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  CHECK(it != entries_.end() && !it->second.done) << "read " << id << " completed twice";
  it->second.done = true;
  it->second.status = std::move(status);
  --pending_;
}

absl::Status CompletionTable::Wait(ReadId id) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("read id ", id, " unknown or already waited for"));
  }
  Entry* e = &it->second;
  mu_.Await(absl::Condition(+[](Entry* e) { return e->done; }, e));
  absl::Status s = std::move(e->status);
  entries_.erase(id);
  return s;
}

bool CompletionTable::Poll(ReadId id) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  return it == entries_.end() || it->second.done;
}

void CompletionTable::WaitIdle() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(+[](int* p) { return *p == 0; }, &pending_));
}

absl::Status PreadFull(int fd, void* dst, size_t n, uint64_t offset, const std::string& path) {
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    ssize_t r = pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r < 0) {
      return absl::InternalError(
          absl::StrCat(path, ": pread of ", n, " bytes at offset ", offset, ": ", std::strerror(errno)));
    }
    if (r == 0) {
      return absl::DataLossError(absl::StrCat(path, ": end of file at offset ", offset,
                                              " (pack truncated after open?)"));
    }
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return absl::OkStatus();
}

absl::StatusOr<int> OpenPackFile(const std::string& path, bool direct, bool* is_direct) {
  *is_direct = false;
  if (direct) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (fd >= 0) {
      *is_direct = true;
      return fd;
    }
    LOG(INFO) << path << ": O_DIRECT not available (" << std::strerror(errno)
              << "), using buffered reads";
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat(path, ": open: ", std::strerror(errno)));
  }
  return fd;
}

absl::Status ReadVerified(const ExpertPack& pack, const ReadRequest& r,
                          const std::function<absl::Status()>& read_once) {
  absl::Status s = read_once();
  if (!s.ok()) return s;
  s = pack.VerifyRecord(r.layer, r.expert, r.dst);
  if (s.ok()) return s;
  LOG(WARNING) << s.message() << "; reading the record again";
  s = read_once();
  if (!s.ok()) return s;
  return pack.VerifyRecord(r.layer, r.expert, r.dst);
}

}  // namespace st::internal
