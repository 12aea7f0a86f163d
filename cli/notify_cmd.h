// `vigil notify test RECEIVER`: sends one test notification through a receiver the controller
// has configured and prints its answer. Stateless functions; thread-compatible.
#pragma once

#include "cli/command_env.h"

namespace vigil::cli {

// Registers the verbs on `app`; their actions run against `env`.
void AddNotifyCommands(CLI::App& app, CommandEnv& env);

}  // namespace vigil::cli
