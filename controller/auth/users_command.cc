#include "controller/auth/users_command.h"

#include <google/protobuf/util/json_util.h>

#include <CLI/CLI.hpp>
#include <memory>
#include <system_error>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "controller/auth/auth.h"
#include "controller/auth/users.h"
#include "storage/sqlite/sqlite_store.h"

namespace vigil::controller {
namespace {

constexpr const char* kMe = "vigil-controller: ";

std::string Json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  options.add_whitespace = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) {
    return absl::StrCat("{\"error\": \"cannot print ", message.GetTypeName(), " as JSON\"}\n");
  }
  if (json.empty() || json.back() != '\n') {
    json += '\n';
  }
  return json;
}

// 1 for a failed request, 2 for bad usage (the contract's exit statuses).
int Failed(std::ostream& err, absl::string_view what, const absl::Status& status) {
  err << kMe << what << ": " << status.message() << '\n';
  return absl::IsInvalidArgument(status) ? 2 : 1;
}

}  // namespace

CLI::App* AddUsersCommands(CLI::App& app, std::string* db_path, UsersCommand* command) {
  CLI::App* users = app.add_subcommand("users", "manage the people who use the API");
  users->require_subcommand(1);
  auto db = [db_path](CLI::App* verb) {
    verb->add_option("--db", *db_path, "SQLite database file")->capture_default_str();
  };
  auto lifetime = [command](CLI::App* verb) {
    verb->add_option("--expires-in", command->expires_in,
                     "how long the new token works, e.g. 90d or 12h; never: no expiry")
        ->capture_default_str();
  };
  auto output = [command](CLI::App* verb) {
    verb->add_option("-o,--output", command->output, "table (for people) or json (for scripts)")
        ->check(CLI::IsMember({"table", "json"}))
        ->capture_default_str();
  };
  CLI::App* add = users->add_subcommand("add", "add a user and print their token, once");
  add->add_option("NAME", command->name, "user name")->required();
  add->add_option("--role", command->role, "viewer|responder|commander|admin")->required();
  db(add);
  lifetime(add);
  CLI::App* list = users->add_subcommand(
      "list", "list users: role, created, token expiry, disabled, last rotation");
  db(list);
  output(list);
  for (auto [verb, help] :
       {std::pair{"disable", "refuse every credential of a user (a running controller: within 2 s)"},
        std::pair{"enable", "let a disabled user in again with their current token"},
        std::pair{"rotate", "give a user a new token (printed once); the old one is refused"}}) {
    CLI::App* sub = users->add_subcommand(verb, help);
    sub->add_option("NAME", command->name, "user name")->required();
    db(sub);
    output(sub);
    if (std::string_view(verb) == "rotate") {
      lifetime(sub);
    }
  }
  return users;
}

int RunUsersCommand(CLI::App& users, const UsersCommand& command, const std::string& db_path,
                    int64_t now_unix_ms, std::ostream& out, std::ostream& err) {
  if (users.get_subcommands().empty()) {
    err << kMe << "users: a verb is required (add, list, disable, enable, rotate)\n";
    return 2;
  }
  const std::string verb = users.get_subcommands().front()->get_name();
  const bool json = command.output == "json";
  absl::Duration lifetime = absl::InfiniteDuration();
  if (verb == "add" || verb == "rotate") {
    absl::StatusOr<absl::Duration> parsed = ParseTokenLifetime(command.expires_in);
    if (!parsed.ok()) {
      return Failed(err, "--expires-in", parsed.status());
    }
    lifetime = *parsed;
  }
  // Only `add` may create a database: anywhere else a missing file is a wrong --db, and an empty
  // database made there would only hide it.
  absl::StatusOr<std::unique_ptr<storage::Store>> opened =
      verb == "add" ? storage::OpenSqliteStore(db_path) : storage::OpenExistingSqliteStore(db_path);
  if (!opened.ok()) {
    err << kMe << opened.status().message() << '\n';
    return 1;
  }
  storage::Store& store = **opened;
  const std::string& name = command.name;

  if (verb == "add") {
    absl::StatusOr<std::string> token = AddUser(store, name, command.role, now_unix_ms, lifetime);
    if (!token.ok()) {
      return Failed(err, absl::StrCat("cannot add user ", name), token.status());
    }
    out << *token << '\n';
    err << "user " << name << " (" << command.role << ") added; the token above is shown once "
        << "and stored only as a hash; it "
        << (lifetime == absl::InfiniteDuration()
                ? std::string("never expires")
                : absl::StrCat("expires at ",
                               FormatUnixMillis(ExpiryUnixMillis(now_unix_ms, lifetime))))
        << '\n';
    return 0;
  }
  if (verb == "list") {
    absl::StatusOr<v1::ListUsersResponse> users_list = ListUsers(store);
    if (!users_list.ok()) {
      return Failed(err, "cannot list users", users_list.status());
    }
    out << (json ? Json(*users_list) : FormatUsersTable(*users_list));
    return 0;
  }
  if (verb == "rotate") {
    absl::StatusOr<v1::RotateUserTokenResponse> rotated =
        RotateUserToken(store, name, now_unix_ms, lifetime);
    if (!rotated.ok()) {
      return Failed(err, absl::StrCat("cannot rotate the token of ", name), rotated.status());
    }
    if (json) {
      out << Json(*rotated);
    } else {
      out << rotated->token() << '\n';
    }
    err << "user " << name << " has a new token (shown once, stored only as a hash); the old one "
        << "is refused (by a running controller within 2 s); it "
        << (rotated->user().expires_unix_ms() == 0
                ? std::string("never expires")
                : absl::StrCat("expires at ", FormatUnixMillis(rotated->user().expires_unix_ms())))
        << '\n';
    return 0;
  }
  const bool disable = verb == "disable";
  absl::StatusOr<v1::UserInfo> changed =
      disable ? DisableUser(store, name, now_unix_ms) : EnableUser(store, name);
  if (!changed.ok()) {
    return Failed(err, absl::StrCat("cannot ", verb, " ", name), changed.status());
  }
  if (json) {
    out << Json(*changed);
  } else if (disable) {
    out << "user " << name << " disabled since "
        << FormatUnixMillis(changed->disabled_unix_ms())
        << "; a running controller refuses them within 2 s\n";
  } else {
    out << "user " << name << " enabled\n";
  }
  return 0;
}

}  // namespace vigil::controller
