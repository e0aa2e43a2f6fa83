#include "common/pem_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace st {

absl::StatusOr<std::string> ReadPemFile(const std::string& path, PemKind kind, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", what, " '", path, "': ", std::strerror(errno)));
  }
  // PEM files are a few KiB; a model file given by mistake is not read whole.
  constexpr std::streamsize kMaxBytes = 1 << 20;
  std::string pem(kMaxBytes + 1, '\0');
  in.read(pem.data(), kMaxBytes + 1);
  pem.resize(static_cast<size_t>(in.gcount()));
  if (pem.size() > static_cast<size_t>(kMaxBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", path, "' is larger than 1 MiB: not a PEM file"));
  }
  const bool ok = kind == PemKind::kCertificate
                      ? absl::StrContains(pem, "-----BEGIN CERTIFICATE-----")
                      : absl::StrContains(pem, "-----BEGIN ") &&
                            absl::StrContains(pem, "PRIVATE KEY-----");
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " '", path, "' is not a PEM ",
        kind == PemKind::kCertificate ? "certificate (no '-----BEGIN CERTIFICATE-----' line)"
                                      : "private key (no '-----BEGIN ... PRIVATE KEY-----' line)"));
  }
  return pem;
}

}  // namespace st
