// `vigil users list|disable|enable|rotate`: an admin manages people through the controller's
// API (the same verbs as `vigil-controller users ...` on the database). Stateless functions;
// thread-compatible.
#pragma once

#include <ostream>

#include "cli/command_env.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::cli {

// Registers the verbs on `app`; their actions run against `env`.
void AddUsersCommands(CLI::App& app, CommandEnv& env);

// Table: NAME, ROLE, CREATED, EXPIRES, DISABLED, ROTATED (UTC; "never" and "-" for none).
void PrintUsersTable(const v1::ListUsersResponse& response, std::ostream& out);

}  // namespace vigil::cli
