// The CLI's connection to the controller: the flags that describe it, the channel credentials
// (the one place that decides transport security), per-call metadata and deadline, and the
// translation of a failed call into the one-line message people read.
// ControllerClient is thread-safe after construction (gRPC stubs are).
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "vigil/v1/control_service.grpc.pb.h"

namespace vigil::cli {

inline constexpr char kDefaultController[] = "127.0.0.1:7443";

struct ConnectionOptions {
  std::string controller = kDefaultController;  // HOST:PORT
  std::string token;                            // sent as "authorization: Bearer <token>"
  absl::Duration timeout = absl::Seconds(10);   // deadline of every unary call
  std::string tls_ca;                           // PEM files; all empty: plain text
  std::string tls_cert;
  std::string tls_key;
};

// TLS (grpc::SslCredentials) when any --tls-* flag is given, plain text otherwise.
// Errors name the flag or file at fault.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ConnectionOptions& options);

class ControllerClient {
 public:
  // Builds the channel and stub; does not connect yet. Fails only on bad TLS flags.
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
