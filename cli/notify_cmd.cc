#include "cli/notify_cmd.h"

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "cli/output.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::cli {
namespace {

int RunTest(CommandEnv& env, const std::string& receiver) {
  v1::TestNotificationRequest request;
  request.set_receiver(receiver);
  v1::TestNotificationResponse response;
  // An unknown receiver or one that refused: the controller's message, exit 1.
  if (!env.Call("TestNotification", &v1::ControlService::StubInterface::TestNotification, request,
                &response)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(response);
  env.out() << OneLine(response.result()) << '\n';
  return kExitOk;
}

}  // namespace

void AddNotifyCommands(CLI::App& app, CommandEnv& env) {
  CLI::App* notify = app.add_subcommand("notify", "Incident notifications");
  notify->require_subcommand(1);
  auto receiver = std::make_shared<std::string>();
  CLI::App* test = notify->add_subcommand(
      "test", "Send a test notification through a configured receiver now (admin)");
  test->add_option("receiver", *receiver, "receiver name, as in the controller's settings")
      ->required();
  test->callback(
      [&env, receiver] { env.SetAction([&env, receiver] { return RunTest(env, *receiver); }); });
}

}  // namespace vigil::cli
