// Where a tool that writes a new file under a temporary name and renames it
// into place (convert's pack, synth's GGUF) may rename it to. A rename
// replaces whatever directory entry is at the target: run as root,
// `convert -o /dev/null` had turned /dev/null into a regular file.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace st {

// `path` itself when nothing is there yet or a regular file is (it will be
// replaced); when `path` is a symbolic link of this user's, the file it
// leads to, so the link stays and its target is replaced (the temporary
// file then goes beside the target, whose directory must be writable).
// FailedPrecondition when the target exists and is not a regular file (a
// device, FIFO, socket or directory), naming what it is, or when a link on
// the way belongs to another user.
absl::StatusOr<std::string> ReplaceableOutputPath(const std::string& path);

}  // namespace st
