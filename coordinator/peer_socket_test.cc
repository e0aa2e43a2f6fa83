// PeerSocket: finds the accepted socket of a loopback connection by its two
// ends and tells an open peer from one that closed or reset, without
// consuming data.
#include "coordinator/peer_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

}  // namespace
}  // namespace st::serve
