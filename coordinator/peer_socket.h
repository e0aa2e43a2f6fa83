// Whether the client of an HTTP request is still connected, for handlers
// that produce their whole reply before sending anything (non-streaming
// completions).
//
// cpp-httplib 0.11.4 (Debian 12) gives a handler neither the socket nor a
// "connection closed" query (Request::is_connection_closed arrived in a
// later release). A streaming reply's DataSink does notice a client that
// closed (FIN or reset) at its next is_writable() (serve_test: a queued
// stream is cancelled within one 50 ms poll), but a non-streaming handler
// has no sink until it returns. What a request does carry is both
// ends of its TCP connection (local_port, remote_addr, remote_port), which
// name exactly one socket of this process; FindPeerSocket looks it up
// among the process's descriptors (getsockname/getpeername), and
// PeerClosed peeks at it without consuming anything.
//
// Limits: a client that half-closes (shutdown(SHUT_WR)) while still waiting
// for the reply reads as gone, as it does for llama-server; with HTTPS a
// client that sends TLS close_notify before its FIN leaves unread bytes in
// the socket and reads as connected, so such requests run to the end.
#pragma once

#include <string>
#include <string_view>

namespace st::serve {

// The socket of one accepted connection. Valid while the request's handler
// runs (cpp-httplib closes the socket after the handler returns).
class PeerSocket {
 public:
  PeerSocket() = default;
  explicit PeerSocket(int fd) : fd_(fd) {}
  bool found() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // True once the peer closed or reset the connection; false while it is
  // open, when it sent bytes not read yet, or when the socket is unknown.
  // Never blocks, never consumes data.
  bool PeerClosed() const;

 private:
  int fd_ = -1;
};

// Finds the TCP socket whose local port is `local_port` and whose peer is
// remote_addr:remote_port (numeric address as getnameinfo(NI_NUMERICHOST)
// prints it). Not found: a PeerSocket with found() false. Scans
// /proc/self/fd: cost grows with the number of open descriptors.
PeerSocket FindPeerSocket(int local_port, std::string_view remote_addr, int remote_port);

}  // namespace st::serve
