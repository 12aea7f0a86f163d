// Moves an agent's state (command journal, result journal, telemetry spool) from the folder
// earlier versions kept it in by default (/var/lib/vigil-agent) to the one packages use
// (/var/lib/vigil), so an upgrade neither loses the journal nor trips over its marker.
// Call once at start, before anything opens those files. Not thread-safe.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "agent/agent_config.h"

namespace vigil::agent {

// When `legacy_dir`/ID.journal exists and `config.journal_path` does not, renames into the
// config's places, in this order: ID.spool (when the config's spool is the default beside the
// journal), ID.results (when the result journal is the default), the journal's ID.journal.*
// files (its marker), and last ID.journal itself, so an interrupted move resumes at the next
// start. Every move is logged. Nothing is moved when a destination exists already, or when
// `legacy_dir` and the new folder are on different filesystems (rename cannot move across them,
// and a copy could be torn): the error names both paths. OK when there is nothing to move.
absl::Status MoveLegacyAgentState(const std::string& legacy_dir, const AgentConfig& config);

}  // namespace vigil::agent
