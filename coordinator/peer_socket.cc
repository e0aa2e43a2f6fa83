#include "coordinator/peer_socket.h"

#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace st::serve {
namespace {

// Numeric host and port of a socket address; false if not IPv4/IPv6.
bool HostPort(const sockaddr_storage& addr, socklen_t len, std::string* host, int* port) {
  if (addr.ss_family != AF_INET && addr.ss_family != AF_INET6) return false;
  char h[NI_MAXHOST], p[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, h, sizeof(h), p, sizeof(p),
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return false;
  }
  *host = h;
  *port = std::atoi(p);
  return true;
}

}  // namespace

bool PeerSocket::PeerClosed() const {
  if (fd_ < 0) return false;
  char byte;
  const ssize_t n = recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;  // orderly shutdown by the peer
  if (n > 0) return false;
  return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;  // reset, etc.
}

namespace {

// Calls fn(fd, peer host, peer port) for every connected IPv4/IPv6 socket of
// the process whose local port is `local_port` (accepted connections; a
// listening socket has no peer), until fn returns false.
template <typename Fn>
void ForEachConnectionOnPort(int local_port, Fn fn) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return;
  while (dirent* entry = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    std::string host;
    int port = -1;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&addr), &len) != 0) continue;
    if (!HostPort(addr, len, &host, &port) || port != local_port) continue;
    len = sizeof(addr);
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&addr), &len) != 0) continue;
    if (!HostPort(addr, len, &host, &port)) continue;
    if (!fn(static_cast<int>(fd), host, port)) break;
  }
  closedir(dir);
}

}  // namespace

PeerSocket FindPeerSocket(int local_port, std::string_view remote_addr, int remote_port) {
  int found = -1;
  ForEachConnectionOnPort(local_port, [&](int fd, const std::string& host, int port) {
    if (port != remote_port || host != remote_addr) return true;
    found = fd;
    return false;
  });
  return PeerSocket(found);
}

std::vector<std::pair<std::string, int>> ConnectionPeers(int local_port) {
  std::vector<std::pair<std::string, int>> peers;
  ForEachConnectionOnPort(local_port, [&](int, const std::string& host, int port) {
    peers.emplace_back(host, port);
    return true;
  });
  return peers;
}

int ShutdownIdleConnectionReads(int local_port,
                                absl::FunctionRef<bool(const std::string&, int)> busy,
                                int quiet_ms) {
  int count = 0;
  ForEachConnectionOnPort(local_port, [&](int fd, const std::string& host, int port) {
    if (busy(host, port)) return true;
    // Bytes not read yet, or received lately: a request may be arriving or
    // being parsed (not marked busy yet). Left for a later call.
    int unread = 0;
    if (ioctl(fd, FIONREAD, &unread) != 0 || unread > 0) return true;
    tcp_info info{};
    socklen_t len = sizeof(info);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 ||
        info.tcpi_last_data_recv < static_cast<uint32_t>(quiet_ms)) {
      return true;
    }
    if (shutdown(fd, SHUT_RD) == 0) ++count;
    return true;
  });
  return count;
}

}  // namespace st::serve
