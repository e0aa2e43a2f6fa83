#include "storage/expert_stats.h"
#include "common/temp_file_guard.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"

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
  // A FIFO (or device) there would block the open below, waiting for a
  // writer: refused first, like a pack that is not a regular file.
  if (struct stat st; stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": the expert stats file is not a regular file"));
    }
    // Larger than the model's counts can be written (each at most 20
    // digits and a separator): not read, since a word without spaces (a
    // file of zeros) went into memory whole, past any memory budget.
    const uint64_t n = uint64_t{pack.n_layers} * pack.n_experts;
    const uint64_t most = 4096 + n * 21 + pack.n_layers;
    if (static_cast<uint64_t>(st.st_size) > most) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": not an expert stats file of this model (", st.st_size,
          " bytes, more than its counts can take)"));
    }
  }
  errno = 0;
  std::ifstream in(path);
  if (!in) {
    // Only a missing file is "no stats yet"; one that exists but cannot be
    // read (permissions, I/O) must not be taken for empty and overwritten.
    const int open_errno = errno;
    struct stat st;
    if (stat(path.c_str(), &st) != 0 && errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, ": no expert stats file"));
    }
    return absl::ErrnoToStatus(open_errno != 0 ? open_errno : EIO,
                               absl::StrCat(path, ": cannot read the expert stats file"));
  }
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
    std::string word;
    if (!(in >> word)) return bad("truncated counts");
    // Digits only: istream would take "-5" as 2^64 - 5, the hottest expert.
    if (word.find_first_not_of("0123456789") != std::string::npos ||
        !absl::SimpleAtoi(word, &c)) {
      return bad(absl::StrCat("bad count '", word, "'"));
    }
  }
  std::string extra;
  if (in >> extra) return bad("trailing data");
  return s;
}

namespace {

// The file a stats path names: a symlink of ours (stats kept on another
// disk, or shared between setups) is followed, so that a save replaces its
// file rather than the link by a regular file, and runs through different
// links lock the same file. A link another user owns is not followed (in a
// shared directory it could name any file of ours, which a save replaces):
// the link itself is replaced, as before. By hand: weakly_canonical leaves
// a dangling link (its file not written yet) unresolved. Not normalized: a
// ".." after a linked directory is the kernel's to resolve.
std::string FollowSymlinks(const std::string& path) {
  std::filesystem::path resolved = path;
  for (int hops = 0; hops < 40; ++hops) {
    struct stat link;
    if (lstat(resolved.c_str(), &link) != 0 || !S_ISLNK(link.st_mode) ||
        link.st_uid != geteuid()) {
      break;
    }
    std::error_code ec;
    const std::filesystem::path target = std::filesystem::read_symlink(resolved, ec);
    if (ec) break;
    resolved = target.is_absolute() ? target : resolved.parent_path() / target;
  }
  return resolved.string();
}

}  // namespace

absl::Status SaveExpertStats(const std::string& link_path, const ExpertStats& stats) {
  const std::string path = FollowSymlinks(link_path);
  const std::string tmp = TempPathFor(path);
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
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      return absl::ResourceExhaustedError(absl::StrCat(tmp, ": write failed (disk full?)"));
    }
  }
  // On disk before it replaces the old file: after a power cut the rename
  // could otherwise surface an empty file, whose counts are then dropped as
  // malformed.
  const int fd = open(tmp.c_str(), O_WRONLY | O_CLOEXEC);
  int err = fd < 0 ? errno : 0;
  if (fd >= 0) {
    if (fsync(fd) != 0) err = errno;
    close(fd);
  }
  if (err != 0) {
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat(tmp, ": fsync failed: ", std::strerror(err)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

absl::Status AddExpertStats(const std::string& link_path, const PackHeader& pack,
                            const std::vector<uint64_t>& delta, absl::Status* replaced) {
  const std::string path = FollowSymlinks(link_path);
  const size_t n = static_cast<size_t>(pack.n_layers) * pack.n_experts;
  if (delta.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("expert stats: ", delta.size(), " counts for a pack of ", n, " experts"));
  }
  // flock needs no write access to the lock file, only to create it.
  // O_NONBLOCK: a FIFO there had blocked the open (and the exit of run and
  // chat) forever, waiting for a writer; anything but a regular file is
  // then not used.
  const std::string lock_path = path + ".lock";
  int lock = open(lock_path.c_str(), O_CREAT | O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0644);
  std::string why = lock < 0 ? absl::StrCat("cannot open (", std::strerror(errno), ")") : "";
  if (struct stat st; lock >= 0 && (fstat(lock, &st) != 0 || !S_ISREG(st.st_mode))) {
    close(lock);
    lock = -1;
    why = "not a regular file";
  }
  const absl::Cleanup unlock = [lock] {
    if (lock >= 0) close(lock);  // releases the flock
  };
  int locked = -1;
  while (lock >= 0 && (locked = flock(lock, LOCK_EX)) != 0 && errno == EINTR) {
  }
  if (lock >= 0 && locked != 0) why = absl::StrCat("cannot lock (", std::strerror(errno), ")");
  if (locked != 0) {
    LOG(WARNING) << lock_path << ": " << why << "; adding expert stats without the lock (runs "
                 << "ending at the same moment may lose counts)";
  }
  ExpertStats stats;
  absl::StatusOr<ExpertStats> old = LoadExpertStats(path, pack);
  if (old.ok()) {
    stats = *std::move(old);
  } else if (!absl::IsNotFound(old.status()) && !absl::IsInvalidArgument(old.status())) {
    return old.status();  // there, but unreadable: keep its counts
  } else {
    if (replaced != nullptr && !absl::IsNotFound(old.status())) *replaced = old.status();
    stats = ExpertStats{.fingerprint = pack.fingerprint,
                        .n_layers = static_cast<int>(pack.n_layers),
                        .n_experts = static_cast<int>(pack.n_experts),
                        .counts = std::vector<uint64_t>(n, 0)};
  }
  for (size_t i = 0; i < n; ++i) {
    const uint64_t room = std::numeric_limits<uint64_t>::max() - stats.counts[i];
    stats.counts[i] += std::min(delta[i], room);
  }
  return SaveExpertStats(path, stats);
}

}  // namespace st
