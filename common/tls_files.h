// Checks certificate files before they are used: the CA bundle and the certificate parse, and
// the key is the certificate's. The agent runs it before certificates renewed in place replace
// the ones in use (on SIGHUP), so a renewal caught half written is refused; both daemons run it
// for --check-config. Stateless; thread-safe.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/transport.h"

namespace vigil {

// How messages name each file: a flag ("--tls-ca", written "--tls-ca=PATH") or a config key's
// place ("agent.yaml:4: key 'tls.ca'", written "agent.yaml:4: key 'tls.ca': PATH").
struct TlsFileNames {
  std::string ca = "--tls-ca";
  std::string cert = "--tls-cert";
  std::string key = "--tls-key";
};

// OK when the CA, certificate and key of `files` (those given) can be used together; otherwise
// an error naming the file and what is wrong with it. A certificate needs its key and the other
// way round.
absl::Status CheckTlsFiles(const TransportFlags& files, const TlsFileNames& names = {});

// Plain text only when asked for (`insecure`) and only on loopback: OK, or an error saying which.
absl::Status CheckPlainText(const TransportFlags& files, absl::string_view address);

// What MakeClientCredentials and MakeServerCredentials would refuse, found without making
// credentials or logging (for --check-config): plain text without --insecure or off loopback,
// a missing CA, an incomplete set (the server needs all three), files that cannot be read, do
// not parse or do not belong together. With any file named, TLS is used and --insecure ignored.
absl::Status CheckClientTransport(const TransportFlags& files, const TlsFileNames& names,
                                  absl::string_view address);
absl::Status CheckServerTransport(const TransportFlags& files, const TlsFileNames& names,
                                  absl::string_view address);

// "--tls-ca=PATH" or "FILE:LINE: key 'K': PATH", as TlsFileNames describes.
std::string DescribeFile(const std::string& name, const std::string& path);

}  // namespace vigil
