// Expert sources: read one expert record (gate, up, down^T; see
// storage/expert_pack.h) from a pack into a caller's buffer, asynchronously,
// so that reads can be issued right after routing and waited for later.
//
//   auto src = OpenExpertSource(pack, {.kind = SourceKind::kAuto});
//   auto ids = (*src)->Submit({{.layer = 3, .expert = 7, .dst = buf}});
//   ... attention runs ...
//   ST_RETURN_IF_ERROR((*src)->Wait((*ids)[0]));
//
// Every completed read has been checked against the record's checksum; a
// mismatch is re-read once, and if it fails again the read ends with
// DATA_LOSS naming layer, expert, offset and file. Wrong bytes are never
// reported as OK.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "storage/expert_pack.h"

namespace st {

struct ReadRequest {
  int layer = 0;
  int expert = 0;
  // record_size bytes, aligned to kPackAlignment; must stay valid and
  // untouched until Wait() returned for this read.
  void* dst = nullptr;
  // A guess (the next layer's likely experts): io_uring queues it behind
  // every read that is not one, until Promote.
  bool guess = false;
};
using ReadId = uint64_t;

// Thread-safe: Submit, Wait and Poll may be called from any threads. Each id
// must be waited for exactly once (Wait frees its bookkeeping); destroying the
// source waits for reads still in flight.
class ExpertSource {
 public:
  virtual ~ExpertSource() = default;
  virtual std::string_view name() const = 0;  // "io_uring", "pread", "mmap", "memory"
  const ExpertPack& pack() const { return *pack_; }

  // Starts the reads; returns one id per request, in order. INVALID_ARGUMENT
  // (nothing submitted) if a request is out of range, dst is null or
  // misaligned.
  absl::StatusOr<std::vector<ReadId>> Submit(absl::Span<const ReadRequest> requests);
  // Blocks until read `id` finished; its final status.
  virtual absl::Status Wait(ReadId id) = 0;
  // True if read `id` has finished (Wait will not block).
  virtual bool Poll(ReadId id) = 0;

  // Submit + Wait of one record.
  absl::Status Read(int layer, int expert, void* dst);

  // Read `id` (submitted as a guess, not yet waited for) is needed now: it
  // stops queueing behind other reads (io_uring: its chunks not yet in the
  // ring join theirs). The other sources queue nothing by priority.
  virtual void Promote(ReadId id) {}
  // Drops read `id` (a guess, not yet waited for) if none of it has gone to
  // the disk yet: true, and its Wait returns CANCELLED. Otherwise (and on
  // the other sources, which start reads at once) false: it goes on.
  virtual bool Cancel(ReadId id) { return false; }

  // Tells the source that reads will land in [base, base + bytes) (the
  // expert cache's slots; base 4 KiB aligned), once, before any read into
  // it. io_uring registers it as fixed buffers, so a read into it skips
  // pinning its pages per request; the other sources have nothing to do.
  // An error (RESOURCE_EXHAUSTED when RLIMIT_MEMLOCK is too small for it,
  // FAILED_PRECONDITION when called twice) leaves reads working as before.
  virtual absl::Status RegisterMemory(char* base, uint64_t bytes);
  // Records read into registered memory (io_uring's READ_FIXED: every
  // chunk of the record), each once however many times it was retried.
  virtual uint64_t fixed_reads() const { return 0; }

 protected:
  explicit ExpertSource(std::shared_ptr<const ExpertPack> pack) : pack_(std::move(pack)) {}
  // Requests are validated by Submit().
  virtual std::vector<ReadId> SubmitValid(absl::Span<const ReadRequest> requests) = 0;

  std::shared_ptr<const ExpertPack> pack_;
};

enum class SourceKind { kAuto, kIoUring, kPread, kMmap, kMemory };
std::string_view SourceKindName(SourceKind kind);
absl::StatusOr<SourceKind> ParseSourceKind(std::string_view name);

struct SourceOptions {
  // kAuto: io_uring, or the pread pool (with a log line) if io_uring cannot be
  // set up. kIoUring fails instead of falling back.
  SourceKind kind = SourceKind::kAuto;
  // io_uring ring entries / most reads (chunks) in flight. Two: with more,
  // the reads in flight share the disk, so a record's chunks (and the
  // records of a step) land later and all together instead of in order,
  // and its hashing starts later: 21b at 8 GiB (session 31, 512 KiB
  // chunks) stalled 756 ms over a traced run with 2, 867 with 4, against
  // 951 for whole records 64 deep.
  int queue_depth = 2;
  int pread_threads = 4;    // pread pool size
  bool direct_io = true;    // O_DIRECT where the file system allows it (else buffered, logged)
  // For tests: behave as if io_uring_queue_init failed with ENOSYS.
  bool simulate_io_uring_failure = false;
  // io_uring: honour RegisterMemory (false: plain reads into any memory),
  // with registered buffers of whole records up to this size each (the
  // kernel's limit is 1 GiB; tests use less to get many buffers).
  bool register_buffers = true;
  uint64_t fixed_buffer_bytes = uint64_t{1} << 30;
  // io_uring: a record is read in chunks of this many bytes (a multiple of
  // kPackAlignment), queued in order (at most queue_depth in the ring) and
  // hashed in order as they land, so a record is verified ~one chunk after
  // its last byte arrives instead of a whole record's hash later.
  uint64_t read_chunk_bytes = uint64_t{512} << 10;
};

absl::StatusOr<std::unique_ptr<ExpertSource>> OpenExpertSource(
    std::shared_ptr<const ExpertPack> pack, const SourceOptions& options);

// The individual implementations (OpenExpertSource picks one).
// io_uring: one ring of queue_depth entries; submissions under a mutex, one
// reaper thread handles completions (re-queues short reads and -EAGAIN/-EINTR,
// verifies checksums chunk by chunk as a record's chunks land). Reads into memory given to RegisterMemory are
// READ_FIXED.
// pread: pread_threads workers over a FIFO queue.
absl::StatusOr<std::unique_ptr<ExpertSource>> OpenIoUringSource(
    std::shared_ptr<const ExpertPack> pack, const SourceOptions& options);
absl::StatusOr<std::unique_ptr<ExpertSource>> OpenPreadSource(
    std::shared_ptr<const ExpertPack> pack, const SourceOptions& options);
// mmap: reads copy out of a shared read-only mapping (page cache; no
// O_DIRECT). Each read checks the file's size first, so a pack truncated on
// disk while open gives DATA_LOSS (a truncation racing the copy itself can
// still raise SIGBUS, as for any mmap reader).
absl::StatusOr<std::unique_ptr<ExpertSource>> OpenMmapSource(
    std::shared_ptr<const ExpertPack> pack);
// Reads the whole pack into RAM once (record_count * record_size bytes).
absl::StatusOr<std::unique_ptr<ExpertSource>> OpenMemorySource(
    std::shared_ptr<const ExpertPack> pack);

}  // namespace st
