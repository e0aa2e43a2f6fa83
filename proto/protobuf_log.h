// Protobuf's own log lines, routed to glog at a bounded rate. Protobuf logs
// an ERROR for every message it refuses to parse (a string field holding
// invalid UTF-8, for one), and a client can send such messages as fast as
// it likes, before any API-key check: unbounded, that is a log flood.
#pragma once

namespace st {

// Installs the handler (idempotent; thread-safe). Servers call it before
// they start.
void RouteProtobufLogs();

}  // namespace st
