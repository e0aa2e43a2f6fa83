// Temporary output files (a pack or a synthetic GGUF being written under a
// temporary name) removed when the process is ended by SIGINT, SIGTERM,
// SIGHUP or SIGPIPE, as well as by the owner's own error paths: an
// interrupted `convert` or `synth` left multi-GB "*.tmp.PID" files that no
// later run reused or removed.
#pragma once

#include <string>

namespace st {

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
