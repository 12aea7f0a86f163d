#include "common/transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/tls_files.h"

namespace vigil {
namespace {

// A decimal port number, 0 to 65535.
bool IsPort(absl::string_view text) {
  int port = 0;
  return !text.empty() && text.size() <= 5 &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
         absl::SimpleAtoi(text, &port) && port <= 65535;
}

// inet_pton() of `text` (not NUL-terminated) into `out`.
bool ParsesAs(int family, absl::string_view text, void* out) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN ||
      text.find('\0') != absl::string_view::npos) {
    return false;
  }
  const std::string terminated(text);
  return inet_pton(family, terminated.c_str(), out) == 1;
}

}  // namespace

absl::StatusOr<std::string> ReadPemFile(absl::string_view flag, const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, "=", path, ": cannot read: ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (!absl::StrContains(text.str(), "-----BEGIN")) {
    return absl::InvalidArgumentError(absl::StrCat(flag, "=", path, ": not a PEM file"));
  }
  return text.str();
}

void AddTransportFlags(CLI::App& app, TransportFlags& flags) {
  app.add_flag("--insecure", flags.insecure, "plain text, no TLS (loopback addresses only)");
  app.add_option("--tls-ca", flags.ca, "CA bundle (PEM) that signs the peer's certificate");
  app.add_option("--tls-cert", flags.cert, "this side's certificate (PEM)");
  app.add_option("--tls-key", flags.key, "this side's private key (PEM)");
}

bool IsLoopbackAddress(absl::string_view address) {
  absl::string_view rest = address;
  // gRPC's target schemes for one literal address or a name for the local resolver. Any other
  // scheme (unix:, a dns:// with an authority that would answer for us) is not loopback.
  for (absl::string_view scheme : {"ipv4:", "ipv6:", "dns:///"}) {
    if (absl::ConsumePrefix(&rest, scheme)) break;
  }
  if (absl::ConsumePrefix(&rest, "[")) {  // [v6] or [v6]:port
    const size_t close = rest.find(']');
    if (close == absl::string_view::npos) return false;
    absl::string_view after = rest.substr(close + 1);
    if (!after.empty() && !(absl::ConsumePrefix(&after, ":") && IsPort(after))) return false;
    in6_addr v6{};
    return ParsesAs(AF_INET6, rest.substr(0, close), &v6) && IN6_IS_ADDR_LOOPBACK(&v6);
  }
  if (in6_addr v6{}; ParsesAs(AF_INET6, rest, &v6)) {  // a bare IPv6 address has no port
    return IN6_IS_ADDR_LOOPBACK(&v6);
  }
  const size_t colon = rest.find(':');
  const absl::string_view host = rest.substr(0, colon);
  if (colon != absl::string_view::npos && !IsPort(rest.substr(colon + 1))) return false;
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  in_addr v4{};
  return ParsesAs(AF_INET, host, &v4) && (ntohl(v4.s_addr) >> 24) == 127;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeClientCredentials(
    const TransportFlags& flags, absl::string_view address) {
  if (flags.ca.empty() && flags.cert.empty() && flags.key.empty()) {
    if (absl::Status s = CheckPlainText(flags, address); !s.ok()) {
      return s;
    }
    return grpc::InsecureChannelCredentials();
  }
  if (flags.ca.empty()) {
    return absl::InvalidArgumentError("--tls-ca is required with TLS");
  }
  grpc::SslCredentialsOptions options;
  auto ca = ReadPemFile("--tls-ca", flags.ca);
  if (!ca.ok()) {
    return ca.status();
  }
  options.pem_root_certs = *ca;
  if (flags.cert.empty() != flags.key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!flags.cert.empty()) {
    auto cert = ReadPemFile("--tls-cert", flags.cert);
    if (!cert.ok()) {
      return cert.status();
    }
    auto key = ReadPemFile("--tls-key", flags.key);
    if (!key.ok()) {
      return key.status();
    }
    options.pem_cert_chain = *cert;
    options.pem_private_key = *key;
  }
  return grpc::SslCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TransportFlags& flags, absl::string_view address) {
  if (flags.ca.empty() && flags.cert.empty() && flags.key.empty()) {
    if (absl::Status s = CheckPlainText(flags, address); !s.ok()) {
      return s;
    }
    // Said loudly once at startup: tokens travel in clear, and an agent's id is taken on trust.
    spdlog::warn(
        "plain text on {} (--insecure): no TLS, tokens travel in clear and agent ids are not "
        "checked against certificates; for development on loopback only",
        address);
    return grpc::InsecureServerCredentials();
  }
  if (flags.ca.empty() || flags.cert.empty() || flags.key.empty()) {
    return absl::InvalidArgumentError(
        "the controller needs all of --tls-ca, --tls-cert and --tls-key");
  }
  auto ca = ReadPemFile("--tls-ca", flags.ca);
  if (!ca.ok()) {
    return ca.status();
  }
  auto cert = ReadPemFile("--tls-cert", flags.cert);
  if (!cert.ok()) {
    return cert.status();
  }
  auto key = ReadPemFile("--tls-key", flags.key);
  if (!key.ok()) {
    return key.status();
  }
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = *ca;
  options.pem_key_cert_pairs.push_back({*key, *cert});
  spdlog::info(
      "mutual TLS on {}: clients need a certificate signed by {}; agent ids must match "
      "their certificates",
      address, flags.ca);
  return grpc::SslServerCredentials(options);
}

}  // namespace vigil
