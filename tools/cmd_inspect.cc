// `smallthinker inspect FILE`: metadata, tensors, sizes and derived config;
// for an expert pack (convert's output), its header and whether it belongs
// to the GGUF beside it.
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/units.h"
#include "model/config.h"
#include "model/gguf.h"
#include "storage/expert_pack.h"
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

// Only a regular file is read here (opening a FIFO would block; GgufFile::Open
// refuses anything else with a clear error).
// A file named *.stpack is read as a pack even when its magic is damaged,
// so that the error is the pack reader's ("wrong magic"), not a GGUF
// parser's.
bool IsPack(const std::string& path) {
  struct stat st{};
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  if (absl::EndsWith(path, ".stpack")) return true;
  char magic[sizeof(kPackMagic)] = {};
  std::ifstream in(path, std::ios::binary);
  return in.read(magic, sizeof(magic)) && std::memcmp(magic, kPackMagic, sizeof(magic)) == 0;
}

// The pack's header; when MODEL.gguf is beside MODEL.gguf.stpack, whether
// the pack was made from it. Returns the exit code.
int InspectPack(const std::string& path) {
  auto pack = ExpertPack::Open(path);
  if (!pack.ok()) {
    std::fprintf(stderr, "error: %s\n", pack.status().ToString().c_str());
    return 1;
  }
  const PackHeader& h = (*pack)->header();
  std::string flags;
  const auto flag = [&](uint32_t bit, const char* what) {
    if ((h.flags & bit) != 0) absl::StrAppend(&flags, flags.empty() ? "" : ", ", what);
  };
  flag(kPackFlagDownRequantized, "down transposed and re-quantized");
  flag(kPackFlagGatePacked, "gate in the 16-row packed layout");
  flag(kPackFlagUpSplit, "up rows split (scales, then levels)");
  flag(kPackFlagAsStored, "as the model stores them (down not transposed)");
  flag(kPackFlagKQuantPacked, "K-quant gate and down in the 16-row packed layout");
  std::printf(
      "file         %s\nsize         %s\nkind         expert pack, version %u\n"
      "expert type  %s\nlayers       %u\nexperts      %u per layer, %llu records of %s\n"
      "d_model      %u\nd_expert     %u\nfingerprint  %016llx\nlayout       %s\n",
      path.c_str(), FormatBytes(h.file_size).c_str(), h.version,
      h.TypeNames().c_str(), h.n_layers, h.n_experts,
      static_cast<unsigned long long>(h.record_count), FormatBytes(h.record_size).c_str(),
      h.d_model, h.d_expert, static_cast<unsigned long long>(h.fingerprint),
      flags.empty() ? "plain rows" : flags.c_str());
  const std::string suffix = ".stpack";
  if (path.size() > suffix.size() && path.ends_with(suffix)) {
    const std::string gguf_path = path.substr(0, path.size() - suffix.size());
    std::error_code ec;
    if (std::filesystem::exists(gguf_path, ec)) {
      auto gguf = GgufFile::Open(gguf_path);
      const bool match = gguf.ok() && GgufFingerprint(**gguf) == h.fingerprint;
      std::printf("model        %s: %s\n", gguf_path.c_str(),
                  match ? "matches (made from it)"
                        : "does NOT match; re-run `smallthinker convert` on it");
    }
  }
  return 0;
}

}  // namespace

void RegisterInspect(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto all = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "inspect",
      "Print a GGUF's metadata, tensors and the SmallThinker config derived from it,\n"
      "or an expert pack's header (and whether it matches the GGUF beside it).");
  cmd->add_option("file", *path, "GGUF file or expert pack (.stpack)")->required();
  cmd->add_flag("--all-tensors", *all, "List every tensor (default: the first 24)");
  cmd->callback([path, all] {
    if (IsPack(*path)) {
      ExitCode() = InspectPack(*path);
      return;
    }
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
