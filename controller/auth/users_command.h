// `vigil-controller users add|list|disable|enable|rotate`: people managed on the database itself,
// beside a running controller or not (these commands never take the controller's DB.lock; a
// running controller notices their changes within 2 s). The verbs are registered on the
// controller's command line and run here, so main.cc stays thin. Not thread-safe; one command.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

namespace CLI {
class App;
}

namespace vigil::controller {

struct UsersCommand {
  std::string name;
  std::string role;               // add
  std::string expires_in = "90d"; // add, rotate: "never" for a token that does not expire
  std::string output = "table";   // list, disable, enable, rotate: table or json
};

// Adds the "users" subcommand and its verbs to `app`, filling `command`; each verb's --db sets
// `*db_path` (the controller's own --db, so either place works). Returns the "users"
// subcommand: when it was parsed, call RunUsersCommand.
CLI::App* AddUsersCommands(CLI::App& app, std::string* db_path, UsersCommand* command);

// Runs the verb of `users` that was parsed. Exit status: 0 done, 1 failed (unknown user, no
// database, store error; one line on `err`), 2 bad usage (a bad name, role or lifetime).
// A new token is printed alone on `out` (shown once; only its hash is kept), notes go to `err`.
int RunUsersCommand(CLI::App& users, const UsersCommand& command, const std::string& db_path,
                    int64_t now_unix_ms, std::ostream& out, std::ostream& err);

}  // namespace vigil::controller
