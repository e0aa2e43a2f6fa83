#include "common/temp_file_guard.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace st {
namespace {

std::string Touch(const std::string& name) {
  const std::string path =
      (std::filesystem::temp_directory_path() / (name + "." + std::to_string(getpid()))).string();
  std::FILE* f = std::fopen(path.c_str(), "w");
  std::fputs("partial", f);
  std::fclose(f);
  return path;
}

// A child guards a file and is ended by `sig`: the file is gone and the
// child died of that signal.
void ExpectRemovedOn(int sig) {
  const std::string path = Touch("guarded");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(sig, SIG_DFL);  // whatever the test runner inherited (nohup, &)
    TempFileGuard guard(path);
    raise(sig);
    _exit(0);  // not reached
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), sig);
  EXPECT_FALSE(std::filesystem::exists(path)) << "signal " << sig;
  std::filesystem::remove(path);
}

TEST(TempFileGuardTest, SignalsRemoveGuardedFiles) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ExpectRemovedOn(sig);
}

TEST(TempFileGuardTest, ReleasedGuardsLeaveFilesAlone) {
  const std::string kept = Touch("kept");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGTERM, SIG_DFL);
    { TempFileGuard guard(kept); }  // committed: no longer guarded
    raise(SIGTERM);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_TRUE(std::filesystem::exists(kept));
  std::filesystem::remove(kept);
}

TEST(TempFileGuardTest, AProgramsOwnHandlerIsKept) {
  const std::string path = Touch("own");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    struct sigaction sa {};
    sa.sa_handler = [](int) { _exit(42); };
    sigaction(SIGTERM, &sa, nullptr);
    TempFileGuard guard(path);
    raise(SIGTERM);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 42);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace st
