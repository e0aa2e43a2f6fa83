// TLS files (certificates, CAs, private keys) read for gRPC credentials and
// checked to be PEM of the expected kind first: gRPC only says it "cannot
// listen" (a server) or fails the handshake (a client) when one is not.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace st {

enum class PemKind { kCertificate, kPrivateKey };

// The contents of `path`, which must hold a PEM block of `kind` (a
// "-----BEGIN CERTIFICATE-----" line; "-----BEGIN ... PRIVATE KEY-----").
// `what` names the file in errors ("TLS certificate", "worker TLS CA").
// InvalidArgument, naming the file and the line it lacks, otherwise.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, PemKind kind, const char* what);

// Why a TLS server most likely cannot listen when nothing else explains it
// (common/host_port.h ListenError): gRPC cannot make a server of a key that
// is not the certificate's, and only logs that.
inline constexpr char kTlsListenHint[] =
    "gRPC could not set up TLS with these files: is --tls-key the private key of --tls-cert?";

}  // namespace st
