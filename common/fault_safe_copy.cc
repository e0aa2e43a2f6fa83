#include "common/fault_safe_copy.h"

#include <setjmp.h>
#include <signal.h>

#include <atomic>
#include <cstring>
#include <mutex>

namespace st {
namespace {

// The copying thread's jump target while it copies (initial-exec TLS in
// the executable: reading it is async-signal-safe). Volatile: memcpy does
// not read it, so an optimizer dropped the store before the copy as dead
// (set, then cleared right after), and the handler found no target.
thread_local sigjmp_buf* volatile t_on_fault = nullptr;
struct sigaction g_previous;

void OnSigbus(int sig, siginfo_t* info, void* context) {
  if (sigjmp_buf* jump = t_on_fault; jump != nullptr) {
    t_on_fault = nullptr;
    siglongjmp(*jump, 1);
  }
  // Not a guarded copy: whoever handled SIGBUS before, else the default.
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, info, context);
    return;
  }
  if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN &&
      g_previous.sa_handler != nullptr) {
    g_previous.sa_handler(sig);
    return;
  }
  // SIG_IGN cannot stop a fault's SIGBUS from recurring: die of it as by default.
  signal(SIGBUS, SIG_DFL);
  raise(SIGBUS);
}

void InstallOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = OnSigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &g_previous);
  });
}

}  // namespace

bool CopyUnlessSigbus(void* dst, const void* src, size_t n) {
  InstallOnce();
  sigjmp_buf jump;
  // savemask 1: SIGBUS is unblocked again after a jump out of its handler.
  if (sigsetjmp(jump, 1) != 0) return false;  // t_on_fault cleared by the handler
  t_on_fault = &jump;
  std::atomic_signal_fence(std::memory_order_seq_cst);  // the copy stays between
  std::memcpy(dst, src, n);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_on_fault = nullptr;
  return true;
}

}  // namespace st
