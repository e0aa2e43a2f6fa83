#include "common/temp_file_guard.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <system_error>

#include "common/units.h"
#include "glog/logging.h"

namespace st {
namespace {

constexpr int kSlots = 16;
constexpr size_t kMaxPath = 4096;
// 0 free, 1 being written or cleared, 2 guarded (the handler unlinks it).
std::atomic<int> g_state[kSlots];
char g_paths[kSlots][kMaxPath];
constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
// Set by the handler before it reads any path: no new path is written then
// (a slot reused while the handler read it could splice two paths).
std::atomic<bool> g_dying{false};

void OnSignal(int sig) {
  g_dying.store(true, std::memory_order_seq_cst);
  for (int i = 0; i < kSlots; ++i) {
    if (g_state[i].load(std::memory_order_acquire) == 2) unlink(g_paths[i]);  // async-signal-safe
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

void InstallOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int sig : kSignals) {
      struct sigaction old;
      if (sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL ||
          (old.sa_flags & SA_SIGINFO) != 0) {
        continue;  // ignored or handled by the program: leave it
      }
      struct sigaction sa {};
      sa.sa_handler = OnSignal;
      sigemptyset(&sa.sa_mask);
      sigaction(sig, &sa, nullptr);
    }
  });
}

}  // namespace

TempFileGuard::TempFileGuard(const std::string& path) {
  if (path.size() >= kMaxPath) return;
  InstallOnce();
  for (int i = 0; i < kSlots; ++i) {
    int free = 0;
    if (!g_state[i].compare_exchange_strong(free, 1, std::memory_order_seq_cst)) continue;
    if (g_dying.load(std::memory_order_seq_cst)) return;  // the process is ending anyway
    std::memcpy(g_paths[i], path.c_str(), path.size() + 1);
    g_state[i].store(2, std::memory_order_release);
    slot_ = i;
    return;
  }
}

TempFileGuard::~TempFileGuard() {
  if (slot_ >= 0) g_state[slot_].store(0, std::memory_order_release);
}

TempFileLock::TempFileLock(const std::string& path) {
  fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ >= 0 && flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    close(fd_);
    fd_ = -1;
  }
}

TempFileLock::~TempFileLock() {
  if (fd_ >= 0) close(fd_);  // releases the flock
}

std::string TempPathFor(const std::string& final_path) {
  return final_path + ".tmp." + std::to_string(getpid());
}

std::vector<StaleTempFile> RemoveStaleTempFiles(const std::string& final_path,
                                                int quiet_seconds) {
  namespace fs = std::filesystem;
  std::vector<StaleTempFile> removed;
  std::error_code ec;
  const fs::path final(final_path);
  const std::string prefix = final.filename().string() + ".tmp.";
  const fs::path dir = final.has_parent_path() ? final.parent_path() : fs::path(".");
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    char* stop = nullptr;
    const long pid = std::strtol(digits.c_str(), &stop, 10);
    if (*stop != '\0' || digits[0] == '-' || pid <= 0 || pid > (1L << 30)) continue;
    if (pid == getpid()) continue;
    if (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // running (or not ours)
    std::error_code fe;
    if (!it->is_regular_file(fe) || fe) continue;
    const auto mtime = it->last_write_time(fe);
    if (fe || fs::file_time_type::clock::now() - mtime < std::chrono::seconds(quiet_seconds)) {
      continue;
    }
    const uint64_t bytes = it->file_size(fe);
    if (fe) continue;
    // A writer holds its file's flock (TempFileLock), whatever pid it has here.
    const int fd = open(it->path().c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) continue;
    const bool held = flock(fd, LOCK_EX | LOCK_NB) != 0;
    close(fd);
    if (held) continue;
    if (fs::remove(it->path(), fe) && !fe) {
      removed.push_back({it->path().string(), static_cast<int>(pid), bytes});
      LOG(WARNING) << "removed " << FormatBytes(bytes) << " left by an interrupted writer (pid "
                   << pid << ", no longer running): " << it->path().string();
    }
  }
  return removed;
}

}  // namespace st
