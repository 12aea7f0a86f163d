#include "cli/connection.h"

#include <grpc/support/log.h>

#include <cstdlib>
#include <mutex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/output.h"
#include "common/control_channel.h"

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

// gRPC core prints some failures itself on stderr (a refused TLS handshake, with the OpenSSL
// error), which would break the CLI's one-line errors; the status that reaches DescribeError
// says what failed. GRPC_VERBOSITY or GRPC_TRACE in the environment keep gRPC's own logging.
void QuietGrpcLogging() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (std::getenv("GRPC_VERBOSITY") == nullptr && std::getenv("GRPC_TRACE") == nullptr) {
      gpr_set_log_function([](gpr_log_func_args*) {});
    }
  });
}

}  // namespace

void ApplyTransportEnvironment(TransportFlags& transport, bool insecure_flag, bool tls_flag) {
  auto from_env = [](const char* name, std::string& value) {
    const char* text = std::getenv(name);
    if (value.empty() && text != nullptr) {
      value = text;
    }
  };
  if (!insecure_flag) {
    from_env("VIGIL_TLS_CA", transport.ca);
    from_env("VIGIL_TLS_CERT", transport.cert);
    from_env("VIGIL_TLS_KEY", transport.key);
  }
  if (!tls_flag && !transport.insecure) {
    const char* text = std::getenv("VIGIL_INSECURE");
    const std::string value = absl::AsciiStrToLower(text == nullptr ? "" : text);
    transport.insecure = value == "1" || value == "true" || value == "yes";
  }
}

absl::Status CheckToken(absl::string_view token, absl::string_view source) {
  for (size_t i = 0; i < token.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(token[i]);
    if (c < 0x20 || c > 0x7E) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, " holds ", c < 0x20 || c == 0x7F ? "a control character" : "a non-ASCII byte",
          " (", EscapeForTerminal(token.substr(i, 1)), " at byte ", i + 1,
          "): a token is one line of printable ASCII"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTransport(const ConnectionOptions& options) {
  const TransportFlags& transport = options.transport;
  if (transport.ca.empty() && transport.cert.empty() && transport.key.empty() &&
      !transport.insecure) {
    return absl::InvalidArgumentError(
        "no transport security: pass --tls-ca, --tls-cert and --tls-key (or set VIGIL_TLS_CA, "
        "VIGIL_TLS_CERT and VIGIL_TLS_KEY; scripts/dev-ca.sh makes a development set), or "
        "--insecure for a controller on loopback");
  }
  return MakeClientCredentials(transport, options.controller).status();
}

absl::StatusOr<std::unique_ptr<ControllerClient>> ControllerClient::Create(
    const ConnectionOptions& options) {
  auto credentials = MakeClientCredentials(options.transport, options.controller);
  if (!credentials.ok()) return credentials.status();
  QuietGrpcLogging();
  grpc::ChannelArguments args = ControlChannelArguments();
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
    case grpc::StatusCode::UNAVAILABLE: {
      const std::string reason = TransportReason(message);
      // A controller that refuses our certificate (or our plain text) closes the connection
      // during or right after the handshake; with TLS 1.3 the client sees only the close.
      const bool maybe_refused = reason == "TLS handshake failed" || reason == "connection closed";
      const char* hint = "is vigil-controller running? set --controller or VIGIL_CONTROLLER";
      if (maybe_refused && options_.transport.ca.empty()) {
        hint =
            "the controller may require TLS: pass --tls-ca, --tls-cert and --tls-key instead "
            "of --insecure";
      } else if (maybe_refused) {
        hint =
            "check the TLS files: --tls-ca must sign the controller's certificate, and "
            "--tls-cert/--tls-key must be a client certificate of the controller's CA";
      }
      return absl::StrCat("cannot reach controller at ", where, ": ", reason, " (", hint, ")");
    }
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
