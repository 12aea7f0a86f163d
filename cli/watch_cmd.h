// `vigil watch [--incident ID] [--after SEQ]`: follows the timeline, one event per line, each
// once and in seq order: from now on, or every event after SEQ (0: all) and then live ones. It
// survives controller restarts by reconnecting and resuming after the last event printed, and
// resumes by itself when the controller ends the stream because it fell behind.
// Stateless functions; thread-compatible (Ctrl-C arrives through the env's Interrupt).
#pragma once

#include "cli/command_env.h"

namespace vigil::cli {

// Registers `watch` on `app`; its action runs against `env`.
void AddWatchCommand(CLI::App& app, CommandEnv& env);

}  // namespace vigil::cli
