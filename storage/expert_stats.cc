#include "storage/expert_stats.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace st {

std::vector<std::pair<int, int>> ExpertStats::Hottest(int n) const {
  std::vector<int> idx;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] > 0) idx.push_back(static_cast<int>(i));
  }
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return counts[a] > counts[b]; });
  if (static_cast<int>(idx.size()) > n) idx.resize(std::max(n, 0));
  std::vector<std::pair<int, int>> out;
  for (int i : idx) out.emplace_back(i / n_experts, i % n_experts);
  return out;
}

std::string DefaultStatsPath(const std::string& pack_path) { return pack_path + ".stats"; }

absl::StatusOr<ExpertStats> LoadExpertStats(const std::string& path, const PackHeader& pack) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": no expert stats file"));
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  std::string magic, fp_word, fp_hex, shape_word;
  int version = 0;
  ExpertStats s;
  if (!(in >> magic >> version) || magic != "smallthinker-expert-stats" || version != 1) {
    return bad("not an expert stats file (version 1)");
  }
  if (!(in >> fp_word >> fp_hex) || fp_word != "fingerprint") return bad("missing fingerprint");
  std::istringstream hex(fp_hex);
  if (!(hex >> std::hex >> s.fingerprint)) return bad("bad fingerprint");
  if (!(in >> shape_word >> s.n_layers >> s.n_experts) || shape_word != "shape") {
    return bad("missing shape");
  }
  if (s.fingerprint != pack.fingerprint || s.n_layers != static_cast<int>(pack.n_layers) ||
      s.n_experts != static_cast<int>(pack.n_experts)) {
    return bad("recorded for another model (fingerprint or shape differs)");
  }
  s.counts.resize(static_cast<size_t>(s.n_layers) * s.n_experts);
  for (uint64_t& c : s.counts) {
    if (!(in >> c)) return bad("truncated counts");
  }
  std::string extra;
  if (in >> extra) return bad("trailing data");
  return s;
}

absl::Status SaveExpertStats(const std::string& path, const ExpertStats& stats) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat(tmp, ": cannot write"));
    out << "smallthinker-expert-stats 1\n"
        << absl::StrFormat("fingerprint %016x\n", stats.fingerprint) << "shape " << stats.n_layers
        << " " << stats.n_experts << "\n";
    for (int l = 0; l < stats.n_layers; ++l) {
      for (int e = 0; e < stats.n_experts; ++e) {
        out << (e ? " " : "") << stats.counts[static_cast<size_t>(l) * stats.n_experts + e];
      }
      out << "\n";
    }
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return absl::ResourceExhaustedError(absl::StrCat(tmp, ": write failed (disk full?)"));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace st
