// Transport security shared by the three binaries: the TLS flags and the credentials they make.
// Plain text exists only for loopback development, behind --insecure. Stateless; thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace CLI {
class App;
}

namespace vigil {

struct TransportFlags {
  bool insecure = false;
  std::string ca;    // PEM bundle that signs the peer's certificate
  std::string cert;  // our certificate chain (PEM)
  std::string key;   // our private key (PEM)
};

// Reads a PEM file named by `flag`; errors name the flag, the path and why.
absl::StatusOr<std::string> ReadPemFile(absl::string_view flag, const std::string& path);

// Adds --insecure, --tls-ca, --tls-cert and --tls-key to a command line.
void AddTransportFlags(CLI::App& app, TransportFlags& flags);

// True when `address` names loopback, decided by parsing it, never by its prefix: a literal IPv4
// address in 127.0.0.0/8 (dotted quad, as inet_pton reads it), the IPv6 address ::1 (bare, or in
// brackets), or the name localhost; with or without a decimal ":PORT"; optionally behind gRPC's
// "ipv4:", "ipv6:" or "dns:///" scheme. Everything else is false: other names, even
// "127.0.0.1.nip.io" or "localhost.evil", lists of addresses, Unix sockets, short or hexadecimal
// IPv4 forms ("127.1", "0x7f.1").
bool IsLoopbackAddress(absl::string_view address);

// Channel credentials for talking to `address`: mutual TLS from the flags, or plain text when
// --insecure and `address` is loopback. Errors name the flag or file at fault.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeClientCredentials(
    const TransportFlags& flags, absl::string_view address);

// Server credentials for listening on `address`, with the same rules; with TLS, clients must
// present a certificate signed by --tls-ca (the controller then holds agents to the names in it).
// Plain text is logged as a warning, so a log always shows whether peers were authenticated.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TransportFlags& flags, absl::string_view address);

}  // namespace vigil
