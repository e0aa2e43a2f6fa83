#include "common/temp_file_guard.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

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

}  // namespace st
