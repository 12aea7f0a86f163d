#include "cli/users_cmd.h"

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

namespace vigil::cli {
namespace {

struct UserOptions {
  std::string name;
  std::string expires_in;  // rotate; empty: the controller's default (90 days)
};

int RunList(CommandEnv& env) {
  v1::ListUsersResponse response;
  if (!env.Call("ListUsers", &v1::ControlService::StubInterface::ListUsers,
                v1::ListUsersRequest(), &response)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(response);
  PrintUsersTable(response, env.out());
  return kExitOk;
}

int RunDisable(CommandEnv& env, const UserOptions& options) {
  v1::DisableUserRequest request;
  request.set_name(options.name);
  v1::UserInfo response;
  if (!env.Call("DisableUser", &v1::ControlService::StubInterface::DisableUser, request,
                &response)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(response);
  env.out() << "user " << OneLine(response.name()) << " disabled since "
            << FormatTimestamp(response.disabled_unix_ms()) << '\n';
  return kExitOk;
}

int RunEnable(CommandEnv& env, const UserOptions& options) {
  v1::EnableUserRequest request;
  request.set_name(options.name);
  v1::UserInfo response;
  if (!env.Call("EnableUser", &v1::ControlService::StubInterface::EnableUser, request,
                &response)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(response);
  env.out() << "user " << OneLine(response.name()) << " enabled\n";
  return kExitOk;
}

int RunRotate(CommandEnv& env, const UserOptions& options) {
  v1::RotateUserTokenRequest request;
  request.set_name(options.name);
  request.set_expires_in(options.expires_in);
  v1::RotateUserTokenResponse response;
  if (!env.Call("RotateUserToken", &v1::ControlService::StubInterface::RotateUserToken, request,
                &response)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(response);
  // The token alone on stdout, so `TOKEN=$(vigil users rotate NAME)` works; the note on stderr.
  env.out() << OneLine(response.token()) << '\n';
  env.err() << "user " << OneLine(response.user().name())
            << " has a new token (shown once); the old one is refused; it "
            << (response.user().expires_unix_ms() == 0
                    ? std::string("never expires")
                    : "expires at " + FormatTimestamp(response.user().expires_unix_ms()))
            << '\n';
  return kExitOk;
}

}  // namespace

void PrintUsersTable(const v1::ListUsersResponse& response, std::ostream& out) {
  Table table({"NAME", "ROLE", "CREATED", "EXPIRES", "DISABLED", "ROTATED"});
  for (const v1::UserInfo& user : response.users()) {
    table.AddRow({user.name(), user.role(), FormatTimestamp(user.created_unix_ms()),
                  user.expires_unix_ms() == 0 ? "never" : FormatTimestamp(user.expires_unix_ms()),
                  FormatTimestamp(user.disabled_unix_ms()),
                  FormatTimestamp(user.rotated_unix_ms())});
  }
  table.Print(out);
}

void AddUsersCommands(CLI::App& app, CommandEnv& env) {
  CLI::App* users = app.add_subcommand("users", "People who use the API (admins only)");
  users->require_subcommand(1);

  CLI::App* list = users->add_subcommand(
      "list", "Users: role, created, token expiry, disabled, last rotation");
  list->callback([&env] { env.SetAction([&env] { return RunList(env); }); });

  auto options = std::make_shared<UserOptions>();
  CLI::App* disable =
      users->add_subcommand("disable", "Refuse every credential of a user, from the next call on");
  disable->add_option("name", options->name, "user name")->required();
  disable->callback([&env, options] {
    env.SetAction([&env, options] { return RunDisable(env, *options); });
  });

  CLI::App* enable =
      users->add_subcommand("enable", "Let a disabled user in again with their current token");
  enable->add_option("name", options->name, "user name")->required();
  enable->callback([&env, options] {
    env.SetAction([&env, options] { return RunEnable(env, *options); });
  });

  CLI::App* rotate = users->add_subcommand(
      "rotate", "Give a user a new token (printed once); the old one is refused at once");
  rotate->add_option("name", options->name, "user name")->required();
  rotate->add_option("--expires-in", options->expires_in,
                     "how long the new token works, e.g. 90d or 12h; never: no expiry (90d)");
  rotate->callback([&env, options] {
    env.SetAction([&env, options] { return RunRotate(env, *options); });
  });
}

}  // namespace vigil::cli
