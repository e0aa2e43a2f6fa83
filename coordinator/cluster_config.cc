#include "coordinator/cluster_config.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/host_port.h"
#include "common/worker_token.h"
#include "expert_worker/expert_service.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace st {

namespace v1 = smallthinker::v1;

absl::StatusOr<v1::ClusterConfig> ParseClusterConfig(const std::string& text) {
  v1::ClusterConfig c;
  google::protobuf::TextFormat::Parser parser;
  struct Collector : google::protobuf::io::ErrorCollector {
    std::string errors;
    void AddError(int line, int column, const std::string& message) override {
      absl::StrAppend(&errors, "line ", line + 1, ":", column + 1, ": ", message, "; ");
    }
  } collector;
  parser.RecordErrorsTo(&collector);
  if (!parser.ParseFromString(text, &c)) {
    return absl::InvalidArgumentError(absl::StrCat("cluster config: ", collector.errors));
  }
  return c;
}

namespace {

// Checked as `worker --listen` checks its own (gRPC would dial "HOST" at port
// 443, wrap 99999 to 34463 and read "::1:7070" as something else), and port
// 0 is not an address to dial.
absl::Status ValidateWorkerAddress(const std::string& address) {
  if (absl::Status s = ValidateListenAddress(address); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "worker address: ", s.message(), " (a worker is HOST:PORT, [IPv6]:PORT or unix:PATH)"));
  }
  if (address.rfind("unix:", 0) != 0) {
    std::string host;
    int port = 0;
    if (SplitHostPort(address, &host, &port).ok() && port == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("worker address '", address, "' has port 0; give the port it listens on"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateWorkerAddresses(const v1::ClusterConfig& c) {
  std::set<std::string> seen;
  for (const auto& w : c.worker()) {
    if (absl::Status s = ValidateWorkerAddress(w.address()); !s.ok()) return s;
    // Twice the same worker would get two shares of the model and compute
    // both; a typo more likely than a plan.
    if (!seen.insert(w.address()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("worker address '", w.address(), "' is listed twice"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateClusterConfig(const v1::ClusterConfig& c) {
  if (c.worker_size() == 0) return absl::InvalidArgumentError("no workers configured");
  if (absl::Status s = ValidateWorkerAddresses(c); !s.ok()) return s;
  // Written so that NaN (textproto takes "nan") fails too.
  if (!(c.local_share() >= 0 && c.local_share() < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("local_share ", c.local_share(), " outside [0, 1)"));
  }
  if (!std::isfinite(c.rebalance_factor())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rebalance_factor ", c.rebalance_factor(),
        " is not a finite number (0 = the default, negative = off)"));
  }
  if (c.rebalance_factor() > 0 && c.rebalance_factor() <= 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rebalance_factor ", c.rebalance_factor(),
        " must be above 1 (a share this many times off; 0 = the default 3, negative = off)"));
  }
  if (c.spin_us() < 0 || c.spin_us() > 100000) {
    return absl::InvalidArgumentError(absl::StrCat("spin_us ", c.spin_us(), " outside [0, 100000]"));
  }
  if (c.local_threads() != 0 && c.local_threads() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local_threads ", c.local_threads(), " must be 0 (the pool) or 1 (the caller)"));
  }
  const std::pair<const char*, int32_t> non_negative[] = {
      {"step_timeout_ms", c.step_timeout_ms()},
      {"call_timeout_ms", c.call_timeout_ms()},
      {"readmit_backoff_min_ms", c.readmit_backoff_min_ms()},
      {"readmit_backoff_max_ms", c.readmit_backoff_max_ms()},
      {"hot_experts_local", c.hot_experts_local()},
      {"max_message_bytes", c.max_message_bytes()}};
  for (const auto& [name, value] : non_negative) {
    if (value < 0) return absl::InvalidArgumentError(absl::StrCat(name, " ", value, " is negative"));
  }
  {  // As the executor reads them: 0 = 200 and 10000 ms.
    const int32_t lo = c.readmit_backoff_min_ms() > 0 ? c.readmit_backoff_min_ms() : 200;
    const int32_t hi = c.readmit_backoff_max_ms() > 0 ? c.readmit_backoff_max_ms() : 10000;
    if (lo > hi) {
      return absl::InvalidArgumentError(absl::StrCat("readmit_backoff_min_ms ", lo,
                                                     " is above readmit_backoff_max_ms ", hi));
    }
  }
  if (c.max_message_bytes() > kMaxMessageBytes) {
    return absl::InvalidArgumentError(absl::StrCat("max_message_bytes ", c.max_message_bytes(),
                                                   " is above the workers' cap, ",
                                                   kMaxMessageBytes));
  }
  // Checked here, before any call: gRPC aborts the coordinator that sends
  // a metadata value outside printable ASCII.
  if (absl::Status s = ValidateWorkerToken(c.token(), "worker token"); !s.ok()) return s;
  if (c.tls_cert().empty() != c.tls_key().empty()) {
    return absl::InvalidArgumentError("tls_cert and tls_key go together (a client certificate and its key)");
  }
  if (!c.tls_server_name().empty() && c.tls_ca().empty()) {
    return absl::InvalidArgumentError(
        "tls_server_name without tls_ca: the name is checked only over TLS, which needs tls_ca");
  }
  if (!c.tls_cert().empty() && c.tls_ca().empty()) {
    return absl::InvalidArgumentError("tls_cert without tls_ca: mutual TLS needs the workers' CA too");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ClusterConfig> ClusterConfigFromFlags(const std::string& workers,
                                                         const std::string& token,
                                                         const std::string& config_file) {
  v1::ClusterConfig c;
  if (!config_file.empty()) {
    std::error_code ec;
    if (std::filesystem::is_directory(config_file, ec)) {
      return absl::InvalidArgumentError(
          absl::StrCat("cluster config '", config_file, "' is a directory, not a textproto file"));
    }
    std::ifstream in(config_file);
    if (!in) {
      return absl::NotFoundError(absl::StrCat("cannot read cluster config '", config_file,
                                              "': ", std::strerror(errno)));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    auto parsed = ParseClusterConfig(ss.str());
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(config_file, ": ", parsed.status().message()));
    }
    c = *parsed;
  }
  for (absl::string_view a : absl::StrSplit(workers, ',', absl::SkipWhitespace())) {
    c.add_worker()->set_address(std::string(absl::StripAsciiWhitespace(a)));
  }
  if (!token.empty()) c.set_token(token);
  if (absl::Status s = ValidateWorkerAddresses(c); !s.ok()) return s;
  return c;
}

}  // namespace st
