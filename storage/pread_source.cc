// The pread thread-pool source: the fallback when io_uring is unavailable.
#include <unistd.h>

#include <deque>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "storage/source_internal.h"

namespace st {
namespace {

// N worker threads pop reads from a FIFO queue and pread them. Thread-safe.
class PreadSource : public ExpertSource {
 public:
  PreadSource(std::shared_ptr<const ExpertPack> pack, int fd, int threads)
      : ExpertSource(std::move(pack)), fd_(fd) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { Work(); });
  }
  ~PreadSource() override {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    for (std::thread& t : workers_) t.join();  // workers drain the queue first
    close(fd_);
  }
  std::string_view name() const override { return "pread"; }
  absl::Status Wait(ReadId id) override { return table_.Wait(id); }
  bool Poll(ReadId id) override { return table_.Poll(id); }

 protected:
  std::vector<ReadId> SubmitValid(absl::Span<const ReadRequest> requests) override {
    std::vector<ReadId> ids;
    absl::MutexLock lock(&mu_);
    for (const ReadRequest& r : requests) {
      ids.push_back(table_.Add());
      queue_.push_back({ids.back(), r});
    }
    return ids;
  }

 private:
  struct Job {
    ReadId id;
    ReadRequest request;
  };

  void Work() {
    const PackHeader& h = pack_->header();
    for (;;) {
      Job job;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &PreadSource::HasWorkOrStop));
        if (queue_.empty()) return;  // stop_ and drained
        job = queue_.front();
        queue_.pop_front();
      }
      const ReadRequest& r = job.request;
      table_.Complete(job.id, internal::ReadVerified(*pack_, r, [&] {
                        return internal::PreadFull(fd_, r.dst, h.record_size,
                                                   h.RecordOffset(r.layer, r.expert),
                                                   pack_->path());
                      }));
    }
  }
  bool HasWorkOrStop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || !queue_.empty();
  }

  const int fd_;
  internal::CompletionTable table_;
  absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ExpertSource>> OpenPreadSource(
    std::shared_ptr<const ExpertPack> pack, const SourceOptions& options) {
  if (options.pread_threads < 1 || options.pread_threads > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("pread_threads must be in [1, 256], got ", options.pread_threads));
  }
  bool direct = false;
  ST_ASSIGN_OR_RETURN(int fd, internal::OpenPackFile(pack->path(), options.direct_io, &direct));
  return std::unique_ptr<ExpertSource>(new PreadSource(std::move(pack), fd, options.pread_threads));
}

}  // namespace st
