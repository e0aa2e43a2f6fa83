#include "common/fault_safe_copy.h"

#include <setjmp.h>
#include <signal.h>

#include <atomic>
#include <cstring>
#include <mutex>

namespace st {
namespace {

// The copying thread's jump target and source range while it copies.
// Initial-exec TLS (this code is linked into the executable): reading it in
// the handler never calls into the dynamic loader. Volatile: memcpy does
// not read them, so an optimizer dropped the stores before the copy as
// dead (set, then cleared right after), and the handler found no target.
__attribute__((tls_model("initial-exec"))) thread_local sigjmp_buf* volatile t_on_fault = nullptr;
__attribute__((tls_model("initial-exec"))) thread_local const char* volatile t_src_begin = nullptr;
__attribute__((tls_model("initial-exec"))) thread_local const char* volatile t_src_end = nullptr;
struct sigaction g_previous;

void OnSigbus(int sig, siginfo_t* info, void* context) {
  // Ours only when the kernel raised it (si_code > 0: a fault, not a
  // kill -BUS) for an address in the source being copied (not a fault on
  // the destination, or elsewhere in the thread).
  const char* addr = static_cast<const char*>(info->si_addr);
  if (sigjmp_buf* jump = t_on_fault; jump != nullptr && info->si_code > 0 &&
                                     addr >= t_src_begin && addr < t_src_end) {
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
  // The default action: a fault returns and faults again, now killing the
  // process with the real fault's details in its core; a sent SIGBUS
  // (SIG_IGN cannot ignore a fault's) is raised again.
  signal(SIGBUS, SIG_DFL);
  if (info->si_code <= 0) raise(SIGBUS);
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
  t_src_begin = static_cast<const char*>(src);
  t_src_end = static_cast<const char*>(src) + n;
  t_on_fault = &jump;
  std::atomic_signal_fence(std::memory_order_seq_cst);  // the copy stays between
  std::memcpy(dst, src, n);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_on_fault = nullptr;
  return true;
}

}  // namespace st
