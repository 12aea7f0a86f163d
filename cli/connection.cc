#include "cli/connection.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/output.h"
#include "common/transport.h"

namespace vigil::cli {
namespace {

std::string CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::CANCELLED:
      return "cancelled";
    case grpc::StatusCode::UNKNOWN:
      return "unknown error";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "invalid argument";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "deadline exceeded";
    case grpc::StatusCode::NOT_FOUND:
      return "not found";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "already exists";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "permission denied";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "resource exhausted";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "failed precondition";
    case grpc::StatusCode::ABORTED:
      return "aborted";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "out of range";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "not implemented";
    case grpc::StatusCode::INTERNAL:
      return "internal error";
    case grpc::StatusCode::UNAVAILABLE:
      return "unavailable";
    case grpc::StatusCode::DATA_LOSS:
      return "data loss";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "unauthenticated";
    default:
      return absl::StrCat("code ", static_cast<int>(code));
  }
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ConnectionOptions& options) {
  if (options.tls_ca.empty() && options.tls_cert.empty() && options.tls_key.empty()) {
    // The controller serves plain text on loopback for now; mTLS comes with the --tls-* flags.
    return grpc::InsecureChannelCredentials();
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.tls_ca.empty()) {  // otherwise the system's roots
    auto ca = ReadPemFile("--tls-ca", options.tls_ca);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
  }
  if (!options.tls_cert.empty()) {
    auto cert = ReadPemFile("--tls-cert", options.tls_cert);
    if (!cert.ok()) return cert.status();
    auto key = ReadPemFile("--tls-key", options.tls_key);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

absl::StatusOr<std::unique_ptr<ControllerClient>> ControllerClient::Create(
    const ConnectionOptions& options) {
  auto credentials = MakeChannelCredentials(options);
  if (!credentials.ok()) return credentials.status();
  grpc::ChannelArguments args;
  // Reconnect quickly after a controller restart (gRPC's default backoff grows to 120 s).
  // Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: that one is the connect timeout.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5'000);
  // Detect a vanished controller under a quiet `vigil watch`; slower than the agents' pings,
  // which the controller already permits.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  args.SetString(GRPC_ARG_PRIMARY_USER_AGENT_STRING, "vigil-cli/" VIGIL_VERSION);
  auto channel = grpc::CreateCustomChannel(options.controller, *credentials, args);
  return std::unique_ptr<ControllerClient>(new ControllerClient(options, std::move(channel)));
}

ControllerClient::ControllerClient(ConnectionOptions options,
                                   std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::ControlService::NewStub(channel_)) {}

void ControllerClient::Prepare(grpc::ClientContext& context, bool with_deadline) const {
  if (!options_.token.empty()) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
  }
  if (with_deadline) {
    context.set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  }
}

std::string TransportReason(absl::string_view message) {
  struct Known {
    const char* needle;
    const char* reason;
  };
  static constexpr Known kKnown[] = {
      {"connection refused", "connection refused"},
      {"dns resolution failed", "cannot resolve host"},
      {"no route to host", "no route to host"},
      {"network is unreachable", "network is unreachable"},
      {"timed out", "connection timed out"},
      {"timeout occurred", "connection timed out"},
      {"connection reset", "connection reset"},
      {"socket closed", "connection closed"},
      {"cancelling all calls", "the controller shut down"},
      {"handshake", "TLS handshake failed"},
      {"ssl", "TLS handshake failed"},
  };
  std::string lower = absl::AsciiStrToLower(message);
  for (const Known& known : kKnown) {
    if (absl::StrContains(lower, known.needle)) return known.reason;
  }
  std::string line = OneLine(message);
  return line.empty() ? "unavailable" : line;
}

std::string ControllerClient::DescribeError(absl::string_view method,
                                            const grpc::Status& status) const {
  const std::string& where = options_.controller;
  std::string message = OneLine(status.error_message());
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return absl::StrCat("cannot reach controller at ", where, ": ", TransportReason(message),
                          " (is vigil-controller running? set --controller or VIGIL_CONTROLLER)");
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::StrCat("controller at ", where, " did not answer ", method, " within ",
                          absl::FormatDuration(options_.timeout), " (see --timeout)");
    case grpc::StatusCode::UNIMPLEMENTED:
      return absl::StrCat("the controller at ", where, " does not implement ", method,
                          " yet (a newer vigil-controller is needed)");
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::StrCat("not authenticated", message.empty() ? "" : ": ", message,
                          " (set --token or VIGIL_TOKEN)");
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::StrCat("permission denied", message.empty() ? "" : ": ", message);
    case grpc::StatusCode::CANCELLED:
      return absl::StrCat(method, " cancelled", message.empty() ? "" : ": ", message);
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      // The controller's message says what was wrong ("agent 'web-9' not found").
      if (!message.empty()) return message;
      return absl::StrCat(method, ": ", CodeName(status.error_code()));
    default:
      return absl::StrCat(method, " failed: ", CodeName(status.error_code()),
                          message.empty() ? "" : ": ", message);
  }
}

}  // namespace vigil::cli
