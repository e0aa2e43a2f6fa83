#include "coordinator/cluster_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
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

absl::StatusOr<v1::ClusterConfig> ClusterConfigFromFlags(const std::string& workers,
                                                         const std::string& token,
                                                         const std::string& config_file) {
  v1::ClusterConfig c;
  if (!config_file.empty()) {
    std::ifstream in(config_file);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read cluster config '", config_file, "'"));
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
  for (const auto& w : c.worker()) {
    if (w.address().find(':') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "worker address '", w.address(), "' needs a port (host:port) or unix:PATH"));
    }
  }
  return c;
}

}  // namespace st
