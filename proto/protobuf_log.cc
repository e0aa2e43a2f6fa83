#include "proto/protobuf_log.h"

#include <atomic>
#include <cstdint>
#include <string>

#include "glog/logging.h"
#include "google/protobuf/stubs/logging.h"

namespace st {
namespace {

// The first 10 lines, then one in 1000, as glog's LOG_FIRST_N and
// LOG_EVERY_N count them.
void Handler(google::protobuf::LogLevel level, const char* file, int line,
             const std::string& message) {
  if (level == google::protobuf::LOGLEVEL_FATAL) {
    LOG(FATAL) << "protobuf " << file << ":" << line << ": " << message;
  }
  static std::atomic<uint64_t> count{0};
  const uint64_t n = count.fetch_add(1, std::memory_order_relaxed);
  if (n >= 10 && n % 1000 != 0) return;
  LOG(WARNING) << "protobuf " << file << ":" << line << ": " << message
               << (n >= 10 ? " (protobuf lines past the 10th are logged one in 1000)" : "");
}

}  // namespace

void RouteProtobufLogs() { google::protobuf::SetLogHandler(&Handler); }

}  // namespace st
