// What every verb of the vigil CLI shares while one command line runs: the global flags, the
// output streams, the clock, the interrupt, a lazily created controller client and the functions
// that make a call and report its failure on one line. One per RunCli(); not thread-safe
// (only Interrupt may be used from other threads).
#pragma once

#include <google/protobuf/message.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "absl/strings/string_view.h"
#include "cli/connection.h"
#include "cli/interrupt.h"
#include "cli/output.h"
#include "common/clock.h"

namespace CLI {
class App;
}

namespace vigil::cli {

// Exit statuses of the command-line contract.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

class CommandEnv {
 public:
  CommandEnv(std::ostream& out, std::ostream& err, const Clock& clock, Interrupt* interrupt)
      : out_(out), err_(err), clock_(clock), interrupt_(interrupt) {}

  // Filled in by the global flags before the verb runs.
  ConnectionOptions connection;
  OutputFormat format = OutputFormat::kTable;
  // Set by a verb that talks to no controller (`audit verify --bundle`): no token or transport
  // is needed, and none is checked.
  bool offline = false;

  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }
  const Clock& clock() const { return clock_; }
  Interrupt* interrupt() { return interrupt_; }
  bool json() const { return format == OutputFormat::kJson; }

  // Sets what the chosen verb does; called from the verb's CLI11 callback, run after parsing.
  void SetAction(std::function<int()> action) { action_ = std::move(action); }
  const std::function<int()>& action() const { return action_; }

  // The client, created on first use; nullptr after printing why it could not be made.
  ControllerClient* Client();

  // Prints "vigil: <message>" on stderr and returns kExitFailed.
  int Fail(absl::string_view message);
  // Prints "vigil: <message> (run 'vigil <command> --help')" and returns kExitUsage.
  int UsageError(absl::string_view message, absl::string_view command);
  // Pretty JSON of `message` on stdout; returns kExitOk.
  int PrintJson(const google::protobuf::Message& message);

  // Makes one unary call with the token and deadline. On failure prints the one-line reason
  // and returns false.
  template <typename Request, typename Response>
  bool Call(absl::string_view method_name,
            grpc::Status (v1::ControlService::StubInterface::*method)(grpc::ClientContext*,
                                                                      const Request&, Response*),
            const Request& request, Response* response) {
    ControllerClient* client = Client();
    if (client == nullptr) return false;
    grpc::ClientContext context;
    client->Prepare(context, /*with_deadline=*/true);
    grpc::Status status;
    {
      Interrupt::Scope scope(interrupt_, &context);
      status = (client->stub().*method)(&context, request, response);
    }
    if (!status.ok()) {
      bool interrupted = interrupt_ != nullptr && interrupt_->triggered();
      Fail(interrupted ? "interrupted" : client->DescribeError(method_name, status));
      return false;
    }
    return true;
  }

 private:
  std::ostream& out_;
  std::ostream& err_;
  const Clock& clock_;
  Interrupt* interrupt_;
  std::function<int()> action_;
  std::unique_ptr<ControllerClient> client_;
  bool client_failed_ = false;
};

}  // namespace vigil::cli
