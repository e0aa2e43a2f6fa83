#include "common/host_port.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace st {

absl::Status SplitHostPort(const std::string& s, std::string* host, int* port) {
  // "http://host:port" had been read as an IPv6 host without brackets.
  if (const size_t scheme = s.find("://"); scheme != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", s, "' has a URL scheme ('", s.substr(0, scheme + 3), "'); expected HOST:PORT"));
  }
  if (s.size() > 2 && s.front() == '[' && s.back() == ']') {  // its last colon is the host's
    return absl::InvalidArgumentError(absl::StrCat("'", s, "' has no port; expected ", s, ":PORT"));
  }
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) {
    return absl::InvalidArgumentError(absl::StrCat("expected HOST:PORT, got '", s, "'"));
  }
  std::string h = s.substr(0, colon);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') {
    h = h.substr(1, h.size() - 2);
  } else if (h.find(':') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("an IPv6 host needs brackets, e.g. [::1]:PORT; got '", s, "'"));
  }
  const std::string digits = s.substr(colon + 1);
  int p = -1;
  const bool all_digits = std::all_of(digits.begin(), digits.end(),
                                      [](char c) { return absl::ascii_isdigit(c); });
  if (!all_digits || digits.size() > 5 || !absl::SimpleAtoi(digits, &p) || p > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad port '", digits, "' in '", s, "' (expected 0-65535)"));
  }
  *host = h;
  *port = p;
  return absl::OkStatus();
}

absl::Status ValidateListenAddress(const std::string& s) {
  if (absl::StartsWith(s, "unix:")) {
    if (s.size() == 5) return absl::InvalidArgumentError("unix: needs a socket path (unix:PATH)");
    return absl::OkStatus();
  }
  std::string host;
  int port;
  return SplitHostPort(s, &host, &port);
}

bool IsLoopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::string UnixSocketPath(const std::string& address) {
  if (address.rfind("unix://", 0) == 0) return address.substr(7);
  if (address.rfind("unix:", 0) == 0) return address.substr(5);
  return "";
}

namespace {

int UnixListenError(const std::string& path, std::string* what) {
  sockaddr_un sa{};
  if (path.size() >= sizeof(sa.sun_path)) {
    *what = absl::StrCat("the path is ", path.size(), " bytes; a Unix socket's is at most ",
                         sizeof(sa.sun_path) - 1);
    return ENAMETOOLONG;
  }
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    *what = "it is a directory";
    return EISDIR;
  }
  if (lstat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode)) {
    *what = "a file that is not a socket is there (gRPC replaces only sockets)";
    return EEXIST;
  }
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (stat(dir.c_str(), &st) != 0) {
    const int e = errno;
    *what = e == ENOENT ? absl::StrCat("directory '", dir, "' does not exist")
                        : absl::StrCat("directory '", dir, "': ", std::strerror(e));
    return e;
  }
  if (!S_ISDIR(st.st_mode)) {
    *what = absl::StrCat("'", dir, "' is not a directory");
    return ENOTDIR;
  }
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    *what = absl::StrCat("directory '", dir, "': ", std::strerror(errno));
    return EACCES;
  }
  return 0;
}

}  // namespace

int ListenError(const std::string& address, std::string* what) {
  if (const std::string path = UnixSocketPath(address); !path.empty()) {
    return UnixListenError(path, what);
  }
  if (address.rfind("unix", 0) == 0) return 0;  // unix-abstract:NAME: nothing to check
  std::string host;
  int port = 0;
  if (!SplitHostPort(address, &host, &port).ok()) return 0;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (const int e = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
      e != 0) {
    *what = gai_strerror(e);
    return EINVAL;
  }
  int error = 0;
  for (addrinfo* a = found; a != nullptr && error == 0; a = a->ai_next) {
    const int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0) error = errno;
    close(fd);
  }
  freeaddrinfo(found);
  if (error != 0) *what = std::strerror(error);
  return error;
}

}  // namespace st
