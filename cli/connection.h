// The CLI's connection to the controller: the flags that describe it, the check that transport
// security is set up (the credentials themselves come from common/transport, shared with the
// agent and the controller, so all three follow the same rules), per-call metadata and deadline,
// and the translation of a failed call into the one-line message people read.
// ControllerClient is thread-safe after construction (gRPC stubs are).
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/transport.h"
#include "vigil/v1/control_service.grpc.pb.h"

namespace vigil::cli {

inline constexpr char kDefaultController[] = "127.0.0.1:7443";

struct ConnectionOptions {
  std::string controller = kDefaultController;  // HOST:PORT
  std::string token;                            // sent as "authorization: Bearer <token>"
  absl::Duration timeout = absl::Seconds(10);   // deadline of every unary call
  TransportFlags transport;                     // mTLS files, or --insecure (loopback only)
};

// OK when `token` can travel as gRPC metadata: printable ASCII (0x20 to 0x7E) only. Otherwise
// the one-line reason naming `source` (the flag or variable it came from) and the offending byte,
// never the token; the CLI exits 2 with it rather than letting gRPC abort on the call.
absl::Status CheckToken(absl::string_view token, absl::string_view source);

// Fills what the command line left unset from VIGIL_TLS_CA, VIGIL_TLS_CERT, VIGIL_TLS_KEY and
// VIGIL_INSECURE (1, true or yes). Flags win: `insecure_flag` (--insecure was given) ignores the
// VIGIL_TLS_* files, and `tls_flag` (a --tls-* flag was given) ignores VIGIL_INSECURE.
void ApplyTransportEnvironment(TransportFlags& transport, bool insecure_flag, bool tls_flag);

// OK when the connection can be made as configured: mutual TLS files that can be read, or
// --insecure towards a loopback controller. Otherwise the one-line reason, e.g. that neither
// TLS files nor --insecure were given; the CLI exits 2 (bad usage) with it.
absl::Status CheckTransport(const ConnectionOptions& options);

class ControllerClient {
 public:
  // Builds the channel and stub; does not connect yet. Fails only on bad transport flags.
  static absl::StatusOr<std::unique_ptr<ControllerClient>> Create(const ConnectionOptions& options);

  v1::ControlService::StubInterface& stub() { return *stub_; }
  grpc::Channel& channel() { return *channel_; }
  const ConnectionOptions& options() const { return options_; }

  // Adds the token metadata and, when `with_deadline`, the call deadline to `context`.
  void Prepare(grpc::ClientContext& context, bool with_deadline) const;

  // One line, without the "vigil: " prefix, saying what failed and why, e.g.
  // "cannot reach controller at 127.0.0.1:7443: connection refused (is vigil-controller
  // running? set --controller or VIGIL_CONTROLLER)" or the server's NOT_FOUND message.
  std::string DescribeError(absl::string_view method, const grpc::Status& status) const;

 private:
  ControllerClient(ConnectionOptions options, std::shared_ptr<grpc::Channel> channel);

  const ConnectionOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ControlService::StubInterface> stub_;
};

// The short reason inside a transport error ("connection refused", "cannot resolve host").
std::string TransportReason(absl::string_view grpc_message);

}  // namespace vigil::cli
