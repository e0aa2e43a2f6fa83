// PeerSocket: finds the accepted socket of a loopback connection by its two
// ends and tells an open peer from one that closed or reset, without
// consuming data.
#include "coordinator/peer_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace st::serve {
namespace {

int Port(int fd, bool peer) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  if (peer) {
    getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len);
  } else {
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  }
  return ntohs(a.sin_port);
}

// A listening socket on a free loopback port, one client and the accepted end.
struct Connection {
  int listener = -1, client = -1, accepted = -1;
  Connection() {
    listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(listener, 4);
    socklen_t len = sizeof(a);
    getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
    client = socket(AF_INET, SOCK_STREAM, 0);
    connect(client, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    accepted = accept(listener, nullptr, nullptr);
  }
  ~Connection() {
    for (int fd : {listener, client, accepted}) {
      if (fd >= 0) close(fd);
    }
  }
};

TEST(PeerSocketTest, FindsTheAcceptedSocketAndSeesTheClientLeave) {
  Connection c;
  ASSERT_GE(c.accepted, 0);
  const PeerSocket peer = FindPeerSocket(Port(c.accepted, false), "127.0.0.1", Port(c.client, false));
  ASSERT_TRUE(peer.found());
  EXPECT_EQ(peer.fd(), c.accepted);
  EXPECT_FALSE(peer.PeerClosed());
  // Unread bytes from the client: still connected, and the bytes stay.
  ASSERT_EQ(write(c.client, "x", 1), 1);
  EXPECT_FALSE(peer.PeerClosed());
  EXPECT_FALSE(peer.PeerClosed());
  char byte = 0;
  ASSERT_EQ(read(c.accepted, &byte, 1), 1);
  EXPECT_EQ(byte, 'x');
  close(c.client);
  c.client = -1;
  EXPECT_TRUE(peer.PeerClosed());
}

TEST(PeerSocketTest, UnknownConnectionIsNotFoundAndNeverClosed) {
  Connection c;
  const PeerSocket peer = FindPeerSocket(Port(c.accepted, false), "127.0.0.1", 1);
  EXPECT_FALSE(peer.found());
  EXPECT_FALSE(peer.PeerClosed());
  EXPECT_FALSE(FindPeerSocket(Port(c.accepted, false), "10.1.2.3", Port(c.client, false)).found());
}


TEST(PeerSocketTest, ConnectionPeersListsTheAcceptedEndsPeers) {
  Connection c;
  ASSERT_GE(c.accepted, 0);
  const auto peers = ConnectionPeers(Port(c.accepted, false));
  ASSERT_EQ(peers.size(), 1u);  // not the listener (no peer)
  EXPECT_EQ(peers[0].first, "127.0.0.1");
  EXPECT_EQ(peers[0].second, Port(c.client, false));
}

// Whether the accepted end reads end-of-file now (rather than EAGAIN).
bool ReadsEof(int fd) {
  char byte = 0;
  return recv(fd, &byte, 1, MSG_DONTWAIT) == 0;
}

TEST(PeerSocketTest, ShutdownIdleConnectionReadsLeavesBusyAndRecentConnections) {
  Connection c;
  ASSERT_GE(c.accepted, 0);
  const int port = Port(c.accepted, false);
  const int client_port = Port(c.client, false);
  auto none = [](const std::string&, int) { return false; };
  // Just connected: something was received within the quiet period.
  EXPECT_EQ(ShutdownIdleConnectionReads(port, none, 10000), 0);
  EXPECT_FALSE(ReadsEof(c.accepted));
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  // Busy (a reply being written): never touched, however quiet.
  auto busy = [&](const std::string& addr, int p) { return addr == "127.0.0.1" && p == client_port; };
  EXPECT_EQ(ShutdownIdleConnectionReads(port, busy, 50), 0);
  EXPECT_FALSE(ReadsEof(c.accepted));
  // Unread bytes: a request arriving.
  ASSERT_EQ(write(c.client, "x", 1), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  EXPECT_EQ(ShutdownIdleConnectionReads(port, none, 50), 0);
  char byte = 0;
  ASSERT_EQ(read(c.accepted, &byte, 1), 1);
  EXPECT_EQ(byte, 'x');
  // Read, but received within the quiet period (a request being parsed).
  EXPECT_EQ(ShutdownIdleConnectionReads(port, none, 10000), 0);
  EXPECT_FALSE(ReadsEof(c.accepted));
  // Idle: shut down; it reads end-of-file and still writes to the client.
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  EXPECT_EQ(ShutdownIdleConnectionReads(port, none, 50), 1);
  EXPECT_TRUE(ReadsEof(c.accepted));
  ASSERT_EQ(write(c.accepted, "y", 1), 1);
  ASSERT_EQ(read(c.client, &byte, 1), 1);
  EXPECT_EQ(byte, 'y');
}

TEST(PeerSocketTest, ShutdownIdleConnectionReadsTouchesOnlyItsPort) {
  Connection c, other;
  ASSERT_GE(other.accepted, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  EXPECT_EQ(ShutdownIdleConnectionReads(Port(c.accepted, false),
                                        [](const std::string&, int) { return false; }, 50),
            1);
  EXPECT_TRUE(ReadsEof(c.accepted));
  char byte = 0;
  EXPECT_EQ(recv(other.accepted, &byte, 1, MSG_DONTWAIT), -1);
  EXPECT_EQ(errno, EAGAIN);
}

}  // namespace
}  // namespace st::serve
