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
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"

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

// The peers (numeric address, port) of the process's connected TCP sockets
// whose local port is `local_port`. Scans /proc/self/fd like FindPeerSocket.
std::vector<std::pair<std::string, int>> ConnectionPeers(int local_port);

// For a server that has stopped accepting: shuts down the read side
// (shutdown(SHUT_RD)) of its connections on `local_port` that look idle,
// so that one waiting for a next request on a kept-alive connection reads
// end-of-file and ends at once. Idle: `busy(peer address, peer port)` is
// false (the server marks a connection busy from a request's headers to the
// end of its reply: cpp-httplib 0.11.4 stops writing to a socket that
// reads as closed, so a reply still being written must not be touched),
// no unread bytes, and nothing received for `quiet_ms` (a request whose
// bytes were just read may not be marked busy yet). Returns how many were
// shut down. Scans /proc/self/fd like FindPeerSocket.
int ShutdownIdleConnectionReads(int local_port,
                                absl::FunctionRef<bool(const std::string&, int)> busy,
                                int quiet_ms);

}  // namespace st::serve
