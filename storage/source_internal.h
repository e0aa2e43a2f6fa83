// Pieces shared by the expert source implementations. Not API.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "storage/expert_source.h"

namespace st::internal {

// Ids and final statuses of reads. Thread-safe.
class CompletionTable {
 public:
  ReadId Add();
  void Complete(ReadId id, absl::Status status);
  // Blocks until `id` is complete, then forgets it. INVALID_ARGUMENT for an
  // id that was never issued or was already waited for.
  absl::Status Wait(ReadId id);
  bool Poll(ReadId id);
  // Blocks until no read is pending (Complete called for every Add).
  void WaitIdle();

 private:
  struct Entry {
    bool done = false;
    absl::Status status;
  };
  absl::Mutex mu_;
  ReadId next_ ABSL_GUARDED_BY(mu_) = 1;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  std::unordered_map<ReadId, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

// pread until n bytes arrived (EINTR retried, short reads continued).
// INTERNAL naming path and offset on error, DATA_LOSS on end of file.
absl::Status PreadFull(int fd, void* dst, size_t n, uint64_t offset, const std::string& path);

// Opens the pack read-only, with O_DIRECT if `direct` and the file system
// accepts it (else buffered, logged once per path). Returns the fd.
absl::StatusOr<int> OpenPackFile(const std::string& path, bool direct, bool* is_direct);

// Runs read_once, verifies the record checksum, and on mismatch logs, runs
// read_once again and verifies again (DATA_LOSS if it still fails).
absl::Status ReadVerified(const ExpertPack& pack, const ReadRequest& r,
                          const std::function<absl::Status()>& read_once);

}  // namespace st::internal
