#include "common/output_path.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace st {
namespace {

namespace fs = std::filesystem;

const char* KindName(fs::file_type t) {
  switch (t) {
    case fs::file_type::directory: return "a directory";
    case fs::file_type::block: return "a block device";
    case fs::file_type::character: return "a character device";
    case fs::file_type::fifo: return "a FIFO";
    case fs::file_type::socket: return "a socket";
    default: return "not a regular file";
  }
}

}  // namespace

absl::StatusOr<std::string> ReplaceableOutputPath(const std::string& path) {
  std::error_code ec;
  fs::path target = path;
  // Follow links one hop at a time, so that a dangling one leads to where
  // its target would be (canonical() needs the target to exist). Only our
  // own: the rename does not go through the kernel's protected_symlinks
  // check, so another user's link in a shared directory such as /tmp would
  // have had us replace whatever it points to.
  for (int hops = 0; fs::is_symlink(fs::symlink_status(target, ec)); ++hops) {
    struct stat link;
    if (lstat(target.c_str(), &link) != 0 || link.st_uid != geteuid()) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, ": the symbolic link '", target.string(),
          "' belongs to another user; give the path of the file itself"));
    }
    fs::path next = fs::read_symlink(target, ec);
    if (ec || hops == 40) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, ": cannot follow the symbolic link: ", ec ? ec.message() : "too many levels"));
    }
    target = next.is_absolute() ? next : target.parent_path() / next;
  }
  const fs::file_status st = fs::status(target, ec);
  if (ec && st.type() != fs::file_type::not_found) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": ", ec.message()));
  }
  if (st.type() != fs::file_type::not_found && st.type() != fs::file_type::regular) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, target.string() == path ? "" : absl::StrCat(" (-> ", target.string(), ")"),
        " exists and is ", KindName(st.type()),
        ": the output is written as a new file and renamed into place, which would replace it; "
        "give the path of a regular file"));
  }
  return target.string();
}

}  // namespace st
