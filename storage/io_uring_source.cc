// The io_uring source: O_DIRECT reads through one ring, at most queue_depth
// in flight, completions reaped (and checksums verified) by one thread.
// A record is read in chunks (SourceOptions::read_chunk_bytes), queued in
// order, and the reaper feeds each chunk to the record's hash as soon as
// every chunk before it has landed, so only the last chunk or so is still
// to hash when the record's last byte arrives (a whole 3.3 MB 21b record
// took ~285 us to hash after it landed, on the path of the layer waiting
// for it).
// A ring that stops taking submissions (a hard io_uring_enter error, or a
// transient one that lasts kMaxSubmitFailure) is given up: the reads it had
// not taken, and every later one, are read with pread by the reaper thread,
// and the log says so once.
#include <liburing.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "glog/logging.h"
#include "storage/source_internal.h"

namespace st {
namespace {

// Longest chunk (a multiple of the pack alignment): an SQE's length is
// 32-bit.
constexpr uint64_t kMaxReadBytes = uint64_t{1} << 30;
// Largest registered buffer the kernel takes, and most of them per ring.
constexpr uint64_t kMaxFixedBytes = uint64_t{1} << 30;
constexpr uint64_t kMaxFixedBuffers = 1u << 14;
// How long io_uring_submit may keep failing with EAGAIN/EBUSY/ENOMEM (each
// retried when the reaper is idle) before the ring is given up.
constexpr std::chrono::seconds kMaxSubmitFailure{2};
// user_data of an SQE the kernel never took, turned into a no-op when the
// ring was given up (its read went to pread instead).
char kDroppedSqe;

struct Op;

// One chunk of a record read: [begin, begin + len) of the record.
struct Chunk {
  Op* op = nullptr;
  uint64_t begin = 0, len = 0;
  uint64_t done = 0;     // bytes of it already read (== len: landed)
  bool fixed = false;    // last put in the ring as a READ_FIXED
};

// One record read in progress. Owned by the source from Submit to completion.
// Each chunk is queued (pending_, or guesses_ for a guess), in the ring, or
// landed. Pump (any thread, under mu_) sets a chunk's `fixed` as it goes to
// the ring; everything else is changed by the reaper thread once the chunk
// left the queue, and handed back to a queue under mu_.
struct Op {
  ReadId id = 0;
  ReadRequest request;
  int attempt = 0;      // 0: first read, 1: re-read after a checksum mismatch
  bool guess = false;   // queued in guesses_ (guarded by the source's mu_)
  std::vector<Chunk> chunks;
  size_t hashed = 0;    // chunks[0, hashed) are in `hash`
  size_t unfinished = 0;  // chunks neither landed nor failed
  absl::Status error;   // the first chunk's failure: the read ends with it
  size_t fixed_chunks = 0;  // chunks whose first read was READ_FIXED (first attempt)
  RecordHasher hash;
};

// Thread-safe. The submission queue (and pending_, in_flight_) are guarded by
// mu_; the completion queue is touched only by the reaper thread.
class IoUringSource : public ExpertSource {
 public:
  IoUringSource(std::shared_ptr<const ExpertPack> pack, int fd, int buffered_fd,
                const SourceOptions& options)
      : ExpertSource(std::move(pack)),
        fd_(fd),
        buffered_fd_(buffered_fd),
        depth_(options.queue_depth),
        chunk_bytes_(std::min(options.read_chunk_bytes, kMaxReadBytes)),
        register_buffers_(options.register_buffers),
        fixed_buffer_bytes_(std::min(options.fixed_buffer_bytes, kMaxFixedBytes)) {}

  absl::Status Start() {
    const int rc = io_uring_queue_init(static_cast<unsigned>(depth_), &ring_, 0);
    if (rc < 0) {
      return absl::UnavailableError(absl::StrCat("io_uring_queue_init(", depth_,
                                                 "): ", std::strerror(-rc)));
    }
    if ((ring_.features & IORING_FEAT_EXT_ARG) == 0) {
      // Without it io_uring_wait_cqe_timeout would touch the SQ from the reaper.
      io_uring_queue_exit(&ring_);
      return absl::UnavailableError("io_uring lacks IORING_FEAT_EXT_ARG (kernel < 5.11)");
    }
    ring_ok_ = true;
    reaper_ = std::thread([this] { Reap(); });
    return absl::OkStatus();
  }

  ~IoUringSource() override {
    if (ring_ok_) {
      table_.WaitIdle();
      {
        absl::MutexLock lock(&mu_);
        stop_ = true;  // seen by the reaper within its wait's timeout
        if (!broken_) {  // wake it at once
          io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
          if (sqe != nullptr) {
            io_uring_prep_nop(sqe);
            io_uring_sqe_set_data64(sqe, 0);  // 0: stop the reaper
            io_uring_submit(&ring_);
          }
        }
      }
      reaper_.join();
      io_uring_queue_exit(&ring_);
    }
    close(fd_);
    if (buffered_fd_ != fd_) close(buffered_fd_);
  }

  std::string_view name() const override { return "io_uring"; }
  uint64_t fixed_reads() const override { return fixed_reads_.load(std::memory_order_relaxed); }

  // Registers [base, base + bytes) as fixed buffers of whole records, each
  // at most 1 GiB: the kernel pins the pages once here instead of at every
  // O_DIRECT read (and with huge pages, keeps one entry per huge page).
  absl::Status RegisterMemory(char* base, uint64_t bytes) override {
    if (!register_buffers_ || bytes == 0) return absl::OkStatus();
    absl::MutexLock lock(&mu_);
    if (fixed_base_ != nullptr) {
      return absl::FailedPreconditionError("io_uring: memory is registered already");
    }
    const uint64_t record = pack_->header().record_size;
    if (record > fixed_buffer_bytes_) return absl::OkStatus();  // no record fits one buffer
    const uint64_t chunk = fixed_buffer_bytes_ / record * record;
    std::vector<iovec> iov;
    for (uint64_t off = 0; off < bytes; off += chunk) {
      iov.push_back({.iov_base = base + off, .iov_len = std::min(chunk, bytes - off)});
    }
    if (iov.size() > kMaxFixedBuffers) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "io_uring: ", FormatBytes(bytes), " needs ", iov.size(), " fixed buffers, more than ",
          kMaxFixedBuffers));
    }
    const int rc = io_uring_register_buffers(&ring_, iov.data(), static_cast<unsigned>(iov.size()));
    if (rc < 0) {
      std::string why = absl::StrCat("io_uring_register_buffers of ", FormatBytes(bytes), ": ",
                                     std::strerror(-rc));
      rlimit lim{};
      if (rc == -ENOMEM && getrlimit(RLIMIT_MEMLOCK, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
        absl::StrAppend(&why, " (RLIMIT_MEMLOCK is ", FormatBytes(lim.rlim_cur),
                        "; `ulimit -l unlimited` or CAP_IPC_LOCK allows it)");
        return absl::ResourceExhaustedError(why);
      }
      return absl::InternalError(why);
    }
    fixed_base_ = base;
    fixed_bytes_ = bytes;
    fixed_chunk_ = chunk;
    return absl::OkStatus();
  }
  absl::Status Wait(ReadId id) override { return table_.Wait(id); }
  bool Poll(ReadId id) override { return table_.Poll(id); }

 protected:
  std::vector<ReadId> SubmitValid(absl::Span<const ReadRequest> requests) override {
    std::vector<ReadId> ids;
    absl::MutexLock lock(&mu_);
    const uint64_t record = pack_->header().record_size;
    for (const ReadRequest& r : requests) {
      auto op = std::make_unique<Op>();
      op->id = table_.Add();
      op->request = r;
      op->guess = r.guess;
      if (r.guess) guessed_ops_[op->id] = op.get();
      for (uint64_t begin = 0; begin < record; begin += chunk_bytes_) {
        op->chunks.push_back({.op = op.get(), .begin = begin,
                              .len = std::min(chunk_bytes_, record - begin)});
      }
      op->unfinished = op->chunks.size();
      ids.push_back(op->id);
      for (Chunk& c : op->chunks) Queue(c).push_back(&c);
      op.release();  // freed by Finish
    }
    Pump();
    return ids;
  }

 public:
  void Promote(ReadId id) override {
    absl::MutexLock lock(&mu_);
    auto it = guessed_ops_.find(id);
    if (it == guessed_ops_.end()) return;  // not a guess, or ended
    Op* op = it->second;
    guessed_ops_.erase(it);
    op->guess = false;  // a chunk re-queued from now on goes with the others
    auto mine = [op](const Chunk* c) { return c->op == op; };
    for (Chunk* c : guesses_) {
      if (mine(c)) pending_.push_back(c);
    }
    std::erase_if(guesses_, mine);
    Pump();
  }

  bool Cancel(ReadId id) override {
    Op* op = nullptr;
    {
      absl::MutexLock lock(&mu_);
      auto it = guessed_ops_.find(id);
      if (it == guessed_ops_.end()) return false;
      op = it->second;
      auto mine = [op](const Chunk* c) { return c->op == op; };
      // Every chunk still queued (so the reaper, which queued them under
      // mu_, no longer touches the op), first attempt, none of it read (a
      // re-queued short read has bytes in).
      const size_t queued = static_cast<size_t>(std::count_if(guesses_.begin(), guesses_.end(), mine));
      if (queued != op->chunks.size() || op->attempt != 0 ||
          std::any_of(op->chunks.begin(), op->chunks.end(),
                      [](const Chunk& c) { return c.done != 0; })) {
        return false;
      }
      std::erase_if(guesses_, mine);
      guessed_ops_.erase(it);
    }
    table_.Complete(id, absl::CancelledError("expert read dropped: a wrong guess"));
    delete op;
    return true;
  }

 private:
  std::deque<Chunk*>& Queue(const Chunk& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return c.op->guess ? guesses_ : pending_;
  }

  // The next chunk to read (guesses last), or null.
  Chunk* PopNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::deque<Chunk*>& q = pending_.empty() ? guesses_ : pending_;
    if (q.empty()) return nullptr;
    Chunk* c = q.front();
    q.pop_front();
    return c;
  }

  // Moves queued chunks into the ring while fewer than depth_ are in
  // flight (once the ring is given up, the reaper reads them instead).
  void Pump() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (broken_) return;
    const PackHeader& h = pack_->header();
    bool queued = false;
    while (in_flight_ < depth_ && (!pending_.empty() || !guesses_.empty())) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) break;
      Chunk* c = PopNext();
      const ReadRequest& r = c->op->request;
      // From where the chunk's last (short) read stopped.
      char* dst = static_cast<char*>(r.dst) + c->begin + c->done;
      const auto len = static_cast<unsigned>(c->len - c->done);
      const uint64_t offset = h.RecordOffset(r.layer, r.expert) + c->begin + c->done;
      const int fixed = FixedBuffer(dst, len);
      c->fixed = fixed >= 0;
      if (fixed >= 0) {
        io_uring_prep_read_fixed(sqe, fd_, dst, len, offset, fixed);
      } else {
        io_uring_prep_read(sqe, fd_, dst, len, offset);
      }
      io_uring_sqe_set_data(sqe, c);
      unsubmitted_.push_back({c, sqe});
      ++in_flight_;
      queued = true;
    }
    if (queued) Submit();
  }

  // Hands the SQEs unsubmitted_ lists to the kernel. On a hard error, or a
  // transient one (EAGAIN, EBUSY, ENOMEM: left for the reaper to retry when
  // idle) that has lasted kMaxSubmitFailure, gives the ring up.
  void Submit() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int rc;
    do {
      rc = io_uring_submit(&ring_);
    } while (rc == -EINTR);
    if (rc >= 0) {  // the kernel takes SQEs in order
      const size_t taken = std::min(static_cast<size_t>(rc), unsubmitted_.size());
      unsubmitted_.erase(unsubmitted_.begin(), unsubmitted_.begin() + taken);
      if (taken > 0 || unsubmitted_.empty()) failing_since_.reset();  // progress
      return;
    }
    if (rc == -EAGAIN || rc == -EBUSY || rc == -ENOMEM) {
      const auto now = std::chrono::steady_clock::now();
      if (!failing_since_) failing_since_ = now;
      LOG_EVERY_N(WARNING, 100) << pack_->path() << ": io_uring_submit: " << std::strerror(-rc)
                                << " (retried)";
      if (now - *failing_since_ < kMaxSubmitFailure) return;
    }
    GiveUpRing(rc);
  }

  // After a failed io_uring_submit: the SQEs the kernel did not take become
  // no-ops (should a later io_uring_enter take them, they must not read into
  // memory their reads were completed for), their chunks go back to the
  // front of their queue, and the reaper reads those and every later one
  // with pread. Reads the kernel took
  // are still reaped as they complete.
  void GiveUpRing(int rc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    LOG(ERROR) << pack_->path() << ": io_uring_submit: " << std::strerror(-rc)
               << "; reading the pack with pread from now on";
    broken_ = true;
    for (auto it = unsubmitted_.rbegin(); it != unsubmitted_.rend(); ++it) {
      io_uring_prep_nop(it->sqe);
      io_uring_sqe_set_data(it->sqe, &kDroppedSqe);
      Queue(*it->chunk).push_front(it->chunk);
      --in_flight_;
    }
    unsubmitted_.clear();
  }

  bool BrokenReaperHasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || !pending_.empty() || !guesses_.empty();
  }

  // Once the ring is given up: the rest of the next queued chunk with
  // pread, landed as a ring read lands. False if none waits.
  bool ReadOnePendingBuffered() {
    Chunk* c = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (!broken_) return false;
      c = PopNext();
      if (c == nullptr) return false;
    }
    const ReadRequest& r = c->op->request;
    absl::Status s = internal::PreadFull(
        buffered_fd_, static_cast<char*>(r.dst) + c->begin + c->done, c->len - c->done,
        pack_->header().RecordOffset(r.layer, r.expert) + c->begin + c->done, pack_->path());
    if (s.ok()) {
      c->done = c->len;
      Landed(c);
    } else {
      Failed(c, std::move(s));
    }
    return true;
  }

  // A chunk's bytes are all there: hashes it and every landed chunk after
  // it, in record order, as far as they go; the record's last chunk ends it.
  void Landed(Chunk* c) {
    Op* op = c->op;
    --op->unfinished;
    if (op->error.ok()) {
      const char* record = static_cast<const char*>(op->request.dst);
      while (op->hashed < op->chunks.size() &&
             op->chunks[op->hashed].done == op->chunks[op->hashed].len) {
        const Chunk& next = op->chunks[op->hashed++];
        op->hash.Update(record + next.begin, next.len);
      }
    }
    if (op->unfinished == 0) End(op);
  }

  // A chunk's read failed: the record's read ends with the first such error
  // once each of its other chunks has been read or has failed (queued ones
  // included: they are not taken back).
  void Failed(Chunk* c, absl::Status status) {
    Op* op = c->op;
    if (op->error.ok()) op->error = std::move(status);
    --op->unfinished;
    if (op->unfinished == 0) End(op);
  }

  // Every chunk has landed or failed: completes the read, or reads the
  // record once more after a first checksum mismatch.
  void End(Op* op) {
    // Once per record, not per re-read: every chunk was READ_FIXED.
    if (op->attempt == 0 && op->fixed_chunks == op->chunks.size()) {
      fixed_reads_.fetch_add(1, std::memory_order_relaxed);
    }
    if (!op->error.ok()) {
      Finish(op, op->error);
      return;
    }
    const ReadRequest& r = op->request;
    absl::Status ok = pack_->CheckChecksum(r.layer, r.expert, op->hash.Digest());
    if (!ok.ok() && op->attempt == 0) {
      LOG(WARNING) << ok.message() << "; reading the record again";
      op->attempt = 1;
      op->hashed = 0;
      op->unfinished = op->chunks.size();
      op->hash.Reset();
      absl::MutexLock lock(&mu_);
      for (auto it = op->chunks.rbegin(); it != op->chunks.rend(); ++it) {
        it->done = 0;
        Queue(*it).push_front(&*it);
      }
      Pump();
      return;
    }
    Finish(op, std::move(ok));
  }

  // The registered buffer holding all of [p, p + n), or -1.
  int FixedBuffer(const char* p, uint64_t n) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (fixed_base_ == nullptr || p < fixed_base_ || p + n > fixed_base_ + fixed_bytes_) return -1;
    const uint64_t i = static_cast<uint64_t>(p - fixed_base_) / fixed_chunk_;
    return p + n <= fixed_base_ + (i + 1) * fixed_chunk_ ? static_cast<int>(i) : -1;
  }

  void Requeue(Chunk* c) {
    absl::MutexLock lock(&mu_);
    Queue(*c).push_front(c);
    Pump();
  }

  void Finish(Op* op, absl::Status status) {
    {
      absl::MutexLock lock(&mu_);
      guessed_ops_.erase(op->id);  // before it is freed: Promote looks it up
    }
    table_.Complete(op->id, std::move(status));
    delete op;
    absl::MutexLock lock(&mu_);
    Pump();
  }

  void Reap() {
    const PackHeader& h = pack_->header();
    for (;;) {
      if (ReadOnePendingBuffered()) continue;
      bool broken;
      {
        absl::MutexLock lock(&mu_);
        if (stop_ && in_flight_ == 0) return;
        broken = broken_;
        if (broken && in_flight_ == 0) {  // nothing to reap: wait for reads or the stop
          mu_.AwaitWithTimeout(absl::Condition(this, &IoUringSource::BrokenReaperHasWork),
                               absl::Milliseconds(100));
          continue;
        }
      }
      io_uring_cqe* cqe = nullptr;
      int rc;
      if (broken) {  // reads the kernel took before: peek (io_uring_enter failed)
        rc = io_uring_peek_cqe(&ring_, &cqe);
        if (rc != 0) {
          absl::SleepFor(absl::Microseconds(200));
          continue;
        }
      } else {
        __kernel_timespec timeout{.tv_sec = 0, .tv_nsec = 10'000'000};
        rc = io_uring_wait_cqe_timeout(&ring_, &cqe, &timeout);
      }
      if (rc != 0) {
        // No completion (timed out, interrupted, or the wait failed): retry
        // the submissions a failed io_uring_submit left behind, which also
        // gives the ring up once they have failed too long (the wait may be
        // failing for the same reason, and never time out).
        {
          absl::MutexLock lock(&mu_);
          if (!broken_ && !unsubmitted_.empty()) Submit();
        }
        if (rc == -ETIME || rc == -EINTR) continue;
        // EAGAIN, EBUSY (completions backed up), ENOMEM (io_uring_enter(2)),
        // whatever it is: the reads stay in flight and are reaped once the
        // ring answers again. (A CHECK here aborted the process, serve
        // included, on an EBUSY injected with strace.)
        LOG_EVERY_N(ERROR, 1000) << pack_->path() << ": io_uring_wait_cqe: " << std::strerror(-rc);
        absl::SleepFor(absl::Milliseconds(1));
        continue;
      }
      void* data = io_uring_cqe_get_data(cqe);
      const int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      if (data == nullptr) return;  // stop NOP
      if (data == &kDroppedSqe) continue;
      Chunk* c = static_cast<Chunk*>(data);
      {
        absl::MutexLock lock(&mu_);
        --in_flight_;
        Pump();  // the ring has room for the next chunk
      }
      const ReadRequest& r = c->op->request;
      const uint64_t offset = h.RecordOffset(r.layer, r.expert) + c->begin + c->done;
      if (res == -EAGAIN || res == -EINTR) {
        Requeue(c);
        continue;
      }
      if (res < 0) {
        Failed(c, absl::InternalError(absl::StrCat(
                      pack_->path(), ": io_uring read of layer ", r.layer, " expert ", r.expert,
                      " at offset ", offset, ": ", std::strerror(-res))));
        continue;
      }
      if (res == 0) {
        Failed(c, absl::DataLossError(absl::StrCat(pack_->path(), ": end of file at offset ",
                                                   offset, " (pack truncated after open?)")));
        continue;
      }
      // A chunk's first read (not a retry or short-read continuation) the
      // ring made as READ_FIXED.
      if (c->fixed && c->done == 0 && c->op->attempt == 0) ++c->op->fixed_chunks;
      c->done += static_cast<uint64_t>(res);
      if (c->done < c->len) {
        if (c->done % kPackAlignment == 0) {
          Requeue(c);  // short read: continue where it stopped
          continue;
        }
        // An unaligned remainder cannot go through O_DIRECT: finish it buffered.
        absl::Status s = internal::PreadFull(
            buffered_fd_, static_cast<char*>(r.dst) + c->begin + c->done, c->len - c->done,
            offset + static_cast<uint64_t>(res), pack_->path());
        if (!s.ok()) {
          Failed(c, std::move(s));
          continue;
        }
        c->done = c->len;
      }
      Landed(c);
    }
  }

  const int fd_, buffered_fd_, depth_;
  const uint64_t chunk_bytes_;
  const bool register_buffers_;
  const uint64_t fixed_buffer_bytes_;
  io_uring ring_{};
  bool ring_ok_ = false;
  std::thread reaper_;
  internal::CompletionTable table_;
  absl::Mutex mu_;
  // Chunks to put in the ring, in order (a record's chunks one after
  // another): guesses' only when no other read's are left.
  std::deque<Chunk*> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<Chunk*> guesses_ ABSL_GUARDED_BY(mu_);
  // Reads submitted as guesses and neither promoted nor ended.
  absl::flat_hash_map<ReadId, Op*> guessed_ops_ ABSL_GUARDED_BY(mu_);
  // Chunks in SQEs the kernel has not taken yet, in submission-queue order.
  struct Unsubmitted {
    Chunk* chunk;
    io_uring_sqe* sqe;
  };
  std::deque<Unsubmitted> unsubmitted_ ABSL_GUARDED_BY(mu_);
  // When io_uring_submit began failing with no SQE taken since.
  std::optional<std::chrono::steady_clock::time_point> failing_since_ ABSL_GUARDED_BY(mu_);
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // the ring was given up
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // chunks in SQEs or taken by the kernel
  // Registered memory: buffer i is [fixed_base_ + i * fixed_chunk_, ...).
  char* fixed_base_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t fixed_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t fixed_chunk_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> fixed_reads_{0};
};

}  // namespace

absl::StatusOr<std::unique_ptr<ExpertSource>> OpenIoUringSource(
    std::shared_ptr<const ExpertPack> pack, const SourceOptions& options) {
  if (options.queue_depth < 1 || options.queue_depth > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("queue_depth must be in [1, 4096], got ", options.queue_depth));
  }
  if (options.read_chunk_bytes == 0 || options.read_chunk_bytes % kPackAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrCat("read_chunk_bytes must be a positive multiple of ",
                                                   kPackAlignment, ", got ",
                                                   options.read_chunk_bytes));
  }
  if (options.simulate_io_uring_failure) {
    return absl::UnavailableError("io_uring_queue_init: Function not implemented (simulated)");
  }
  bool direct = false;
  ST_ASSIGN_OR_RETURN(int fd, internal::OpenPackFile(pack->path(), options.direct_io, &direct));
  int buffered_fd = fd;
  if (direct) {
    bool unused = false;
    auto b = internal::OpenPackFile(pack->path(), false, &unused);
    if (!b.ok()) {
      close(fd);
      return b.status();
    }
    buffered_fd = *b;
  }
  auto src = std::make_unique<IoUringSource>(std::move(pack), fd, buffered_fd, options);
  ST_RETURN_IF_ERROR(src->Start());  // the destructor closes the fds on failure
  return std::unique_ptr<ExpertSource>(std::move(src));
}

}  // namespace st
