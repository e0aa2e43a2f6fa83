// `smallthinker inspect FILE`: metadata, tensors, sizes and derived config.
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/units.h"
#include "model/config.h"
#include "model/gguf.h"
#include "tools/commands.h"

namespace st::tools {
namespace {

std::string Scalar(const GgufValue& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          std::string s = x.size() > 80 ? x.substr(0, 77) + "..." : x;
          for (char& c : s) {
            if (c == '\n') c = ' ';
          }
          return absl::StrCat("\"", s, "\"");
        } else if constexpr (std::is_same_v<T, GgufArray>) {
          return absl::StrCat("[", std::string(GgufTypeName(x.elem_type)), " x ", x.size(), "]");
        } else if constexpr (std::is_same_v<T, bool>) {
          return x ? "true" : "false";
        } else {
          return absl::StrCat(x);
        }
      },
      v.v);
}

}  // namespace

void RegisterInspect(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto all = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "inspect", "Print a GGUF's metadata, tensors and the SmallThinker config derived from it.");
  cmd->add_option("file", *path, "GGUF file")->required();
  cmd->add_flag("--all-tensors", *all, "List every tensor (default: the first 24)");
  cmd->callback([path, all] {
    auto file = GgufFile::Open(*path);
    if (!file.ok()) {
      std::fprintf(stderr, "error: %s\n", file.status().ToString().c_str());
      ExitCode() = 1;
      return;
    }
    const GgufFile& f = **file;
    std::printf("file      %s\nsize      %s\nversion   %u\nalignment %llu\n\n", path->c_str(),
                FormatBytes(f.file_size()).c_str(), f.version(),
                static_cast<unsigned long long>(f.alignment()));
    std::printf("metadata (%zu keys)\n", f.metadata().size());
    for (const auto& [key, value] : f.metadata()) {
      std::printf("  %-48s %s\n", key.c_str(), Scalar(value).c_str());
    }
    uint64_t total = 0, experts = 0;
    for (const auto& t : f.tensors()) {
      total += t.n_bytes;
      if (t.name.find("_exps.") != std::string::npos) experts += t.n_bytes;
    }
    std::printf("\ntensors (%zu, %s; experts %s, dense %s)\n", f.tensors().size(),
                FormatBytes(total).c_str(), FormatBytes(experts).c_str(),
                FormatBytes(total - experts).c_str());
    size_t shown = 0;
    for (const auto& t : f.tensors()) {
      if (!*all && shown++ >= 24) {
        std::printf("  ... %zu more (--all-tensors)\n", f.tensors().size() - 24);
        break;
      }
      std::printf("  %-32s %-5s {%s}  %s\n", t.name.c_str(), std::string(t.type_name()).c_str(),
                  absl::StrJoin(t.ne, ", ").c_str(), FormatBytes(t.n_bytes).c_str());
    }
    auto config = LoadModelConfig(f);
    if (!config.ok()) {
      std::printf("\nnot a loadable SmallThinker model: %s\n", config.status().ToString().c_str());
      ExitCode() = 1;
      return;
    }
    std::printf("\nconfig\n%s", DescribeConfig(*config).c_str());
  });
}

}  // namespace st::tools
