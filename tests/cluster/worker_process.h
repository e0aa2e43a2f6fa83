// A `smallthinker worker` child process for tests: started with fork/exec
// (optionally inside a network namespace), ready once it prints its address,
// killed with SIGKILL when the object dies.
#pragma once

#include <sys/types.h>
#include <sys/wait.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace st::testing {

class WorkerProcess {
 public:
  // Starts `<ST_BINARY_DIR>/tools/smallthinker worker -m model --listen listen
  // -t 1 extra...`, prefixed by `prefix` (e.g. {"ip", "netns", "exec", NS}).
  // Waits up to 20 s for "listening HOST:PORT" (or "listening unix:PATH").
  // `binary` replaces SmallthinkerBinary() when given.
  static absl::StatusOr<std::unique_ptr<WorkerProcess>> Start(
      const std::string& model, const std::string& listen, const std::vector<std::string>& extra,
      const std::vector<std::string>& prefix = {}, const std::string& binary = "");
  ~WorkerProcess();

  const std::string& address() const { return address_; }  // host:port or unix:PATH
  int port() const { return port_; }  // 0 for a Unix socket
  pid_t pid() const { return pid_; }
  // kill -9 and reap.
  void Kill();
  // SIGSTOP, returning once the process is stopped (SIGSTOP is delivered
  // asynchronously: a worker signalled a moment ago may still answer).
  void Pause();
  // SIGTERM, then waits up to `timeout` for the exit: its wait status, or
  // DEADLINE_EXCEEDED (the process is then left to Kill).
  absl::StatusOr<int> Stop(absl::Duration timeout);
  // Everything the worker wrote to stderr so far (for error messages).
  std::string Stderr() const;

 private:
  WorkerProcess() = default;
  pid_t pid_ = -1;
  std::string address_, stderr_path_;
  int port_ = 0;
};

// Path of the smallthinker binary in the build tree.
std::string SmallthinkerBinary();
// A smallthinker binary built for another CPU (ST_FOREIGN_SMALLTHINKER: e.g.
// scripts/cross-arm64's aarch64 build, run through qemu-user by binfmt_misc),
// or "" when none is given.
std::string ForeignSmallthinkerBinary();

// What a finished command left: its wait status and everything it wrote to
// stderr.
struct CommandResult {
  int status = -1;
  std::string err;
  bool exited_with(int code) const { return WIFEXITED(status) && WEXITSTATUS(status) == code; }
};
// Runs `smallthinker args...` (stdout discarded, `env` entries "NAME=value"
// added to the environment) and waits up to `timeout` for it (then kills
// it: status -1).
CommandResult RunSmallthinker(const std::vector<std::string>& args,
                              const std::vector<std::string>& env = {},
                              absl::Duration timeout = absl::Seconds(60));

}  // namespace st::testing
