// `vigil audit verify` (the timeline against its signed checkpoints, with this CLI as a witness
// that remembers the newest checkpoint it verified; or an exported bundle, offline) and
// `vigil audit export` (a JSON or Markdown report of one incident, or an audit bundle; written
// atomically with --out). Stateless; thread-compatible.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "cli/command_env.h"

namespace vigil::cli {

// Registers `audit verify` and `audit export` on `app`; their actions run against `env`.
void AddAuditCommands(CLI::App& app, CommandEnv& env);

// Writes `content` to a temporary file beside `path`, syncs it and renames it over `path`, so
// readers see the old file or the whole new one, never a part. Nothing is left behind on error;
// the message names the file and the system error.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view content);

}  // namespace vigil::cli
