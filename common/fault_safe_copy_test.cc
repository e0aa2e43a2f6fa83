#include "common/fault_safe_copy.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace st {
namespace {

constexpr size_t kSize = 1 << 20;

// A 1 MiB file of 'a' mapped shared, as the mmap expert source maps a pack.
struct Mapped {
  std::string path;
  int fd = -1;
  char* base = nullptr;
  Mapped() {
    static int count = 0;
    path = (std::filesystem::temp_directory_path() /
            ("fault_copy." + std::to_string(getpid()) + "." + std::to_string(count++)))
               .string();
    fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    std::vector<char> bytes(kSize, 'a');
    if (write(fd, bytes.data(), kSize) != static_cast<ssize_t>(kSize)) return;
    void* p = mmap(nullptr, kSize, PROT_READ, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) base = static_cast<char*>(p);
  }
  ~Mapped() {
    if (base != nullptr) munmap(base, kSize);
    if (fd >= 0) close(fd);
    std::remove(path.c_str());
  }
};

// The child `pid` died of its SIGBUS: by the signal itself, or, under
// AddressSanitizer (whose SIGBUS handler the guard passes it on to), by
// the sanitizer's report (an abort or an error exit). Never a clean exit.
void ExpectKilledBySigbus(pid_t pid) {
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
#if defined(__SANITIZE_ADDRESS__)
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
#else
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGBUS);
#endif
}

TEST(FaultSafeCopyTest, CopiesAndReportsACutFile) {
  Mapped m;
  ASSERT_NE(m.base, nullptr);
  std::vector<char> out(kSize, 0);
  ASSERT_TRUE(CopyUnlessSigbus(out.data(), m.base, kSize));
  EXPECT_EQ(out[kSize - 1], 'a');
  ASSERT_EQ(ftruncate(m.fd, kSize / 4), 0);  // cut under the mapping
  EXPECT_FALSE(CopyUnlessSigbus(out.data(), m.base, kSize));
  // Again (the handler was left properly), and within the file it still works.
  EXPECT_FALSE(CopyUnlessSigbus(out.data(), m.base + kSize / 2, 4096));
  EXPECT_TRUE(CopyUnlessSigbus(out.data(), m.base, kSize / 4));
}

// A fault on the destination is not the source's: not swallowed.
TEST(FaultSafeCopyTest, AFaultOutsideTheSourceStillKills) {
  Mapped src, dst_file;
  ASSERT_NE(src.base, nullptr);
  ASSERT_NE(dst_file.base, nullptr);
  // A writable shared mapping of a file that is then cut: writing to it faults.
  void* p = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, dst_file.fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  ASSERT_EQ(ftruncate(dst_file.fd, 0), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    CopyUnlessSigbus(p, src.base, kSize);  // faults on the destination
    _exit(0);
  }
  ExpectKilledBySigbus(pid);
  munmap(p, kSize);
}

// Outside a guarded copy a SIGBUS is not swallowed: the process dies of it.
TEST(FaultSafeCopyTest, OtherFaultsStillKill) {
  Mapped m;
  ASSERT_NE(m.base, nullptr);
  char byte = 0;
  ASSERT_TRUE(CopyUnlessSigbus(&byte, m.base, 1));  // the handler is installed
  ASSERT_EQ(ftruncate(m.fd, 0), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    volatile char c = m.base[100];  // an unguarded read past the end
    (void)c;
    _exit(0);
  }
  ExpectKilledBySigbus(pid);
}

}  // namespace
}  // namespace st
