// Temporary output files (a pack or a synthetic GGUF being written under a
// temporary name) removed when the process is ended by SIGINT, SIGTERM,
// SIGHUP or SIGPIPE, as well as by the owner's own error paths: an
// interrupted `convert` or `synth` left multi-GB "*.tmp.PID" files that no
// later run reused or removed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace st {

// The temporary name a writer of `final_path` uses: "<final_path>.tmp.<pid>".
std::string TempPathFor(const std::string& final_path);

// While alive, holds an exclusive flock on a temporary file being written
// (open it first), so that RemoveStaleTempFiles never takes it, whatever its
// name's pid says: a writer in another PID namespace (a container sharing
// the volume) has a pid that runs nothing here. Best effort.
class TempFileLock {
 public:
  explicit TempFileLock(const std::string& path);
  ~TempFileLock();
  TempFileLock(const TempFileLock&) = delete;
  TempFileLock& operator=(const TempFileLock&) = delete;

 private:
  int fd_ = -1;
};

// A "<final_path>.tmp.<pid>" file left by an earlier writer that no longer
// runs (SIGKILL, a crash, a power cut: no guard could remove it).
struct StaleTempFile {
  std::string path;
  int pid = 0;
  uint64_t bytes = 0;
};

// Removes the stale temporary files of `final_path` in its directory: the
// pid in the name is not a running process (kill(pid, 0) says ESRCH), no
// process holds the file's TempFileLock, and the file has not been
// modified for `quiet_seconds` (a writer on another host sharing the
// directory still writes to its file; short, as a user re-runs a killed
// `convert` at once). Returns what was
// removed (each also logged as a warning); files it could not remove are
// left out. Never throws.
std::vector<StaleTempFile> RemoveStaleTempFiles(const std::string& final_path,
                                                int quiet_seconds = 5);

// While alive, `path` is unlinked if one of those signals ends the process
// (the handler unlinks every registered path, then re-raises the signal with
// its default action, so the exit status stays the signal's). Installs the
// handlers on first use, for signals still at their default action (a
// program that handles them itself keeps its handler). At most 16 paths at
// once; further ones are not guarded. Thread-safe.
class TempFileGuard {
 public:
  explicit TempFileGuard(const std::string& path);
  ~TempFileGuard();  // stops guarding; does not remove the file
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;

 private:
  int slot_ = -1;
};

}  // namespace st
