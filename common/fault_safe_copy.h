// Copying out of a file mapping that may shrink under us: reading a page of
// a MAP_SHARED mapping past the file's current end raises SIGBUS, which
// ends the process. A pack replaced in place while `--io mmap` reads it
// (`cp new.stpack model.stpack` truncates the old one first) killed the
// engine ~3 times in 8 where every other source reported DATA_LOSS.
#pragma once

#include <cstddef>

namespace st {

// memcpy(dst, src, n), except that a SIGBUS the kernel raises for an
// address in [src, src + n) while this thread copies (the file behind it
// was cut) ends the copy early and returns false (dst then holds a partial
// copy). Any other SIGBUS (elsewhere, in another thread, sent with kill)
// goes to the handler that was installed before the first call, or kills
// the process as by default. Installs a SIGBUS handler on first use (a
// handler installed after that replaces it, and the guard with it).
// Thread-safe; not for use inside a signal handler.
bool CopyUnlessSigbus(void* dst, const void* src, size_t n);

}  // namespace st
