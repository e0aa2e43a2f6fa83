// Listen addresses given on the command line: "HOST:PORT" ("[::1]:PORT" for
// IPv6) and, where a Unix domain socket is allowed, "unix:PATH".
#pragma once

#include <string>

#include "absl/status/status.h"

namespace st {

// "host:port" -> (host, port), the brackets of "[v6]:port" removed. The port
// is all digits in [0, 65535] (0 = any free port); anything else, a missing
// host or port, is INVALID_ARGUMENT naming the text.
absl::Status SplitHostPort(const std::string& s, std::string* host, int* port);

// HOST:PORT as SplitHostPort accepts it, or unix:PATH with a non-empty PATH.
absl::Status ValidateListenAddress(const std::string& s);

// The file system path of a "unix:PATH" / "unix:///PATH" address ("" for
// anything else, e.g. unix-abstract:NAME).
std::string UnixSocketPath(const std::string& address);

// Why listening on `address` fails now, which gRPC only logs: for HOST:PORT,
// bind()'s errno as gRPC would get it (SO_REUSEADDR on, as gRPC sets it);
// for unix:PATH, a missing or unwritable directory, a directory or a
// too-long path at PATH. 0 if none of these; `what` gets the text.
int ListenError(const std::string& address, std::string* what);

// 127.0.0.0/8, localhost or ::1.
bool IsLoopback(const std::string& host);

}  // namespace st
