#include "common/host_port.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace st {
namespace {

TEST(HostPortTest, SplitsHostAndPort) {
  std::string host;
  int port = -1;
  ASSERT_TRUE(SplitHostPort("127.0.0.1:8080", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 8080);
  ASSERT_TRUE(SplitHostPort("[::1]:0", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 0);
  ASSERT_TRUE(SplitHostPort("0.0.0.0:65535", &host, &port).ok());
  EXPECT_EQ(port, 65535);
}

TEST(HostPortTest, BracketedHostWithoutPortSaysSo) {
  std::string host;
  int port = 0;
  const absl::Status s = SplitHostPort("[::1]", &host, &port);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no port"), std::string::npos) << s;
}

TEST(HostPortTest, RefusesWhatGrpcOrStoiWouldHaveMisread) {
  std::string host = "kept";
  int port = 7;
  // No port (gRPC took 443), out of range (gRPC wrapped 99999), junk after
  // digits (std::stoi read 80), signs, empty parts.
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:80x",
                          "127.0.0.1:-1", "127.0.0.1:+80", ":80", "", "host:123456", "::1"}) {
    const absl::Status s = SplitHostPort(bad, &host, &port);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find(bad), std::string::npos) << s;
  }
  EXPECT_EQ(host, "kept");  // untouched on error
  EXPECT_EQ(port, 7);
  // A URL: its scheme named (it had been taken for an IPv6 host).
  for (const char* url : {"http://10.0.0.2:50061", "grpc://w:1"}) {
    const absl::Status s = SplitHostPort(url, &host, &port);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << url;
    EXPECT_NE(s.message().find("has a URL scheme"), std::string::npos) << s;
  }
}

TEST(HostPortTest, ListenAddressesIncludeUnixSockets) {
  EXPECT_TRUE(ValidateListenAddress("unix:/tmp/w.sock").ok());
  EXPECT_TRUE(ValidateListenAddress("127.0.0.1:0").ok());
  EXPECT_EQ(ValidateListenAddress("unix:").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateListenAddress("127.0.0.1").code(), absl::StatusCode::kInvalidArgument);
}

// Why a listen would fail, for the messages gRPC does not give.
TEST(HostPortTest, ListenErrorNamesTheCause) {
  char tmpl[] = "/tmp/st_listen_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  std::string why;
  EXPECT_EQ(ListenError("unix:" + dir + "/w.sock", &why), 0) << why;
  EXPECT_EQ(ListenError("unix:" + dir + "/none/w.sock", &why), ENOENT);
  EXPECT_NE(why.find("/none' does not exist"), std::string::npos) << why;
  EXPECT_EQ(ListenError("unix:" + dir, &why), EISDIR);
  std::ofstream(dir + "/plain") << "x";
  EXPECT_EQ(ListenError("unix:" + dir + "/plain", &why), EEXIST);
  EXPECT_NE(why.find("not a socket"), std::string::npos) << why;
  EXPECT_EQ(ListenError("unix:" + dir + "/plain/w.sock", &why), ENOTDIR);
  EXPECT_EQ(ListenError("unix:/" + std::string(200, 'x'), &why), ENAMETOOLONG);
  EXPECT_EQ(ListenError("unix-abstract:name", &why), 0);
  // A TCP port someone listens on.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(a);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  EXPECT_EQ(ListenError("127.0.0.1:" + std::to_string(ntohs(a.sin_port)), &why), EADDRINUSE);
  close(fd);
  EXPECT_EQ(ListenError("127.0.0.1:0", &why), 0);
  std::filesystem::remove_all(dir);
}

TEST(HostPortTest, Loopback) {
  EXPECT_TRUE(IsLoopback("127.0.0.1"));
  EXPECT_TRUE(IsLoopback("127.1.2.3"));
  EXPECT_TRUE(IsLoopback("::1"));
  EXPECT_TRUE(IsLoopback("localhost"));
  EXPECT_FALSE(IsLoopback("0.0.0.0"));
  EXPECT_FALSE(IsLoopback("10.0.0.2"));
}

}  // namespace
}  // namespace st
