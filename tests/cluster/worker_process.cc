#include "tests/cluster/worker_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace st::testing {

std::string SmallthinkerBinary() {
  const char* dir = std::getenv("ST_BINARY_DIR");
  return absl::StrCat(dir ? dir : ST_BINARY_DIR, "/tools/smallthinker");
}

std::string ForeignSmallthinkerBinary() {
  const char* path = std::getenv("ST_FOREIGN_SMALLTHINKER");
  return path != nullptr ? path : "";
}

absl::StatusOr<std::unique_ptr<WorkerProcess>> WorkerProcess::Start(
    const std::string& model, const std::string& listen, const std::vector<std::string>& extra,
    const std::vector<std::string>& prefix, const std::string& binary) {
  std::unique_ptr<WorkerProcess> w(new WorkerProcess());
  static int counter = 0;
  w->stderr_path_ = absl::StrCat("/tmp/st_worker_", getpid(), "_", counter++, ".log");
  std::vector<std::string> args = prefix;
  for (const std::string& a :
       {binary.empty() ? SmallthinkerBinary() : binary, std::string("worker"), std::string("-m"), model,
        std::string("--listen"), listen, std::string("-t"), std::string("1")}) {
    args.push_back(a);
  }
  args.insert(args.end(), extra.begin(), extra.end());
  int out[2];
  if (pipe(out) != 0) return absl::InternalError("pipe");
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork");
  if (pid == 0) {
    dup2(out[1], 1);
    const int err = open(w->stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (err >= 0) dup2(err, 2);
    close(out[0]);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  w->pid_ = pid;
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (line.find('\n') == std::string::npos) {
    const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          deadline - std::chrono::steady_clock::now())
                                          .count());
    pollfd p{out[0], POLLIN, 0};
    if (left <= 0 || poll(&p, 1, left) <= 0) break;
    char buf[256];
    const ssize_t n = read(out[0], buf, sizeof(buf));
    if (n <= 0) break;
    line.append(buf, n);
  }
  close(out[0]);
  if (line.rfind("listening ", 0) != 0 || line.find('\n') == std::string::npos) {
    return absl::UnavailableError(
        absl::StrCat("worker did not start: '", line, "' stderr: ", w->Stderr()));
  }
  w->address_ = line.substr(10, line.find('\n') - 10);
  const bool unix_socket = w->address_.rfind("unix", 0) == 0;  // unix:PATH, no port
  if (!unix_socket &&
      !absl::SimpleAtoi(w->address_.substr(w->address_.rfind(':') + 1), &w->port_)) {
    return absl::InternalError(absl::StrCat("bad address ", w->address_));
  }
  return w;
}

void WorkerProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void WorkerProcess::Pause() {
  if (pid_ <= 0) return;
  kill(pid_, SIGSTOP);
  int status = 0;
  while (waitpid(pid_, &status, WUNTRACED) == pid_) {
    if (WIFSTOPPED(status)) return;
    if (WIFEXITED(status) || WIFSIGNALED(status)) break;  // gone (and reaped)
  }
  pid_ = -1;
}

absl::StatusOr<int> WorkerProcess::Stop(absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("not running");
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("worker ", pid_, " still running ", absl::FormatDuration(timeout),
                   " after SIGTERM"));
}

WorkerProcess::~WorkerProcess() {
  Kill();
  unlink(stderr_path_.c_str());
}

std::string WorkerProcess::Stderr() const {
  std::ifstream in(stderr_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CommandResult RunSmallthinker(const std::vector<std::string>& args,
                              const std::vector<std::string>& env, absl::Duration timeout) {
  static int counter = 0;
  const std::string err_path =
      absl::StrCat("/tmp/st_command_", getpid(), "_", counter++, ".log");
  std::vector<std::string> argv_s = {SmallthinkerBinary()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<std::string> env_s = env;
  CommandResult r;
  const pid_t pid = fork();
  if (pid < 0) return r;
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 1);
    const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (err >= 0) dup2(err, 2);
    for (std::string& e : env_s) putenv(e.data());
    std::vector<char*> argv;
    for (std::string& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      r.status = status;
      break;
    }
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  std::ifstream in(err_path);
  std::stringstream ss;
  ss << in.rdbuf();
  r.err = ss.str();
  unlink(err_path.c_str());
  return r;
}

}  // namespace st::testing
