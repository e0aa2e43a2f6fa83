// The deployment config of a coordinator's workers (ClusterConfig in
// proto/smallthinker/v1/expert.proto): a textproto file and/or flags.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "smallthinker/v1/expert.pb.h"

namespace st {

// Parses a textproto ClusterConfig (INVALID_ARGUMENT with the parser's
// message).
absl::StatusOr<smallthinker::v1::ClusterConfig> ParseClusterConfig(const std::string& text);
// What a coordinator checks before it contacts any worker (INVALID_ARGUMENT
// naming the field): at least one worker, each HOST:PORT ([IPv6]:PORT, port
// 1-65535) or unix:PATH and none twice; local_share in [0, 1);
// rebalance_factor finite; spin_us in [0, 100000]; local_threads 0 or 1;
// timeouts, backoffs and hot_experts_local not negative; max_message_bytes
// in [0, 64 MiB]; tls_cert and
// tls_key set together, and only with tls_ca; the token printable ASCII
// (common/worker_token.h).
absl::Status ValidateClusterConfig(const smallthinker::v1::ClusterConfig& c);
// --workers "host:port,host:port" + --worker-token + optional config file
// (read and parsed first; the flags add workers / override the token). The
// worker addresses are checked as in ValidateClusterConfig.
absl::StatusOr<smallthinker::v1::ClusterConfig> ClusterConfigFromFlags(
    const std::string& workers, const std::string& token, const std::string& config_file);

}  // namespace st
