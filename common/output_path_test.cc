#include "common/output_path.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace st {
namespace {

namespace fs = std::filesystem;

class OutputPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/st_output_path_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

// The path ReplaceableOutputPath gives for `p`, failing the test (not
// crashing it) on an error.
std::string Target(const std::string& p) {
  const absl::StatusOr<std::string> r = ReplaceableOutputPath(p);
  EXPECT_TRUE(r.ok()) << p << ": " << r.status();
  return r.ok() ? *r : "";
}

TEST_F(OutputPathTest, NewAndRegularFilesAreTheirOwnTargets) {
  const std::string fresh = dir_ + "/new.stpack";
  EXPECT_EQ(Target(fresh), fresh);
  const std::string old = dir_ + "/old.stpack";
  std::ofstream(old) << "x";
  EXPECT_EQ(Target(old), old);
}

TEST_F(OutputPathTest, ASymlinkLeadsToItsTarget) {
  const std::string real = dir_ + "/real.gguf";
  std::ofstream(real) << "x";
  const std::string link = dir_ + "/link.gguf";
  fs::create_symlink(real, link);
  EXPECT_EQ(Target(link), real);
  // Relative, through a second link, and from a subdirectory.
  fs::create_directory(dir_ + "/sub");
  fs::create_symlink("../link.gguf", dir_ + "/sub/rel.gguf");
  EXPECT_EQ(fs::path(Target(dir_ + "/sub/rel.gguf")).lexically_normal(), fs::path(real));
  // A dangling link leads to where its target would be.
  const std::string dangling = dir_ + "/dangling.gguf";
  fs::create_symlink(dir_ + "/later.gguf", dangling);
  EXPECT_EQ(Target(dangling), dir_ + "/later.gguf");
  // A loop is an error, not a hang.
  fs::create_symlink(dir_ + "/b.gguf", dir_ + "/a.gguf");
  fs::create_symlink(dir_ + "/a.gguf", dir_ + "/b.gguf");
  EXPECT_EQ(ReplaceableOutputPath(dir_ + "/a.gguf").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// Another user's link (in a shared directory such as /tmp) is not followed:
// it could point at any file of ours.
TEST_F(OutputPathTest, AnotherUsersLinkIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give a link another owner";
  const std::string target = dir_ + "/precious";
  std::ofstream(target) << "keep";
  const std::string link = dir_ + "/theirs.stpack";
  fs::create_symlink(target, link);
  ASSERT_EQ(lchown(link.c_str(), 65534, 65534), 0);
  const absl::StatusOr<std::string> r = ReplaceableOutputPath(link);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("belongs to another user"), std::string::npos) << r.status();
}

TEST_F(OutputPathTest, NonRegularTargetsAreRefused) {
  const auto refused = [](const std::string& p, const std::string& kind) {
    const absl::StatusOr<std::string> r = ReplaceableOutputPath(p);
    ASSERT_FALSE(r.ok()) << p;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(r.status().message().find(kind), std::string::npos) << r.status();
    EXPECT_NE(r.status().message().find(p), std::string::npos) << r.status();
  };
  refused("/dev/null", "a character device");
  refused(dir_, "a directory");
  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  refused(fifo, "a FIFO");
  // Through a symbolic link too (the link would have been replaced, not
  // the device written).
  const std::string link = dir_ + "/null.stpack";
  fs::create_symlink("/dev/null", link);
  refused(link, "a character device");
  const std::string sock = dir_ + "/sock";
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  refused(sock, "a socket");
  close(fd);
  // Nothing was touched.
  struct stat st;
  ASSERT_EQ(stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_TRUE(fs::is_fifo(fifo));
}

}  // namespace
}  // namespace st
