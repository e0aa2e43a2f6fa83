#include "common/temp_file_guard.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

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

// What a SIGKILLed writer leaves: "<final>.tmp.<pid>" of a pid that no
// longer runs. Removed once quiet; a running writer's file, a recent one,
// another name's and a look-alike are kept.
TEST(TempFileGuardTest, RemoveStaleTempFilesTakesOnlyDeadWritersFiles) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("stale_test." + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string final_path = (dir / "model.gguf.stpack").string();
  const pid_t dead = fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) _exit(0);
  int status = 0;
  ASSERT_EQ(waitpid(dead, &status, 0), dead);  // reaped: its pid runs nothing now
  auto make = [](const fs::path& p, bool old) {
    std::FILE* f = std::fopen(p.c_str(), "w");
    std::fputs("partial pack", f);
    std::fclose(f);
    if (old) fs::last_write_time(p, fs::file_time_type::clock::now() - std::chrono::minutes(5));
  };
  const fs::path stale = final_path + ".tmp." + std::to_string(dead);
  const fs::path running = final_path + ".tmp." + std::to_string(getppid());
  const fs::path fresh = final_path + ".tmp.999999999";  // no such pid, but just written
  const fs::path other = (dir / "other.stpack.tmp.").string() + std::to_string(dead);
  const fs::path lookalike = final_path + ".tmp." + std::to_string(dead) + "x";
  make(stale, true);
  make(running, true);
  make(fresh, false);
  make(other, true);
  make(lookalike, true);
  const std::vector<StaleTempFile> removed = RemoveStaleTempFiles(final_path);
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].path, stale.string());
  EXPECT_EQ(removed[0].pid, dead);
  EXPECT_EQ(removed[0].bytes, 12u);
  EXPECT_FALSE(fs::exists(stale));
  for (const fs::path& kept : {running, fresh, other, lookalike}) {
    EXPECT_TRUE(fs::exists(kept)) << kept;
  }
  // A writer whose pid runs nothing here (another PID namespace) but that
  // holds its file's lock: kept.
  const fs::path locked = final_path + ".tmp.999999997";
  make(locked, true);
  {
    const TempFileLock lock(locked.string());
    EXPECT_TRUE(RemoveStaleTempFiles(final_path).empty());
    EXPECT_TRUE(fs::exists(locked));
  }
  ASSERT_EQ(RemoveStaleTempFiles(final_path).size(), 1u);  // released: stale now
  EXPECT_FALSE(fs::exists(locked));
  // Quiet for 0 s: the fresh one of a pid that does not run goes too.
  EXPECT_EQ(RemoveStaleTempFiles(final_path, 0).size(), 1u);
  EXPECT_FALSE(fs::exists(fresh));
  // The writer's own name for it.
  EXPECT_EQ(TempPathFor(final_path), final_path + ".tmp." + std::to_string(getpid()));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace st
