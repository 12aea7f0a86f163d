// `vigil watch [--incident ID] [--after SEQ]`: follows the timeline live, one event per line,
// and survives controller restarts by reconnecting and resuming after the last event printed.
// Stateless functions; thread-compatible (Ctrl-C arrives through the env's Interrupt).
#pragma once

#include "cli/command_env.h"

namespace vigil::cli {

// Registers `watch` on `app`; its action runs against `env`.
void AddWatchCommand(CLI::App& app, CommandEnv& env);

}  // namespace vigil::cli
