// `vigil-controller audit accept-rollback --reason TEXT`: an admin's acceptance of a rollback
// (or fork) the controller detected, run on the database beside a running controller or not. It
// appends an "audit.rollback_accepted" event (who, why, which detection) to the chain; a running
// controller lifts its hold within a second of it. Not thread-safe; one command.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

namespace CLI {
class App;
}

namespace vigil::controller {

struct AuditCommand {
  std::string reason;
  std::string by;  // who accepts; default: $SUDO_USER, else $USER
};

// Adds "audit accept-rollback" to `app`; --db sets `*db_path`. Returns the "audit" subcommand:
// when it was parsed, call RunAuditCommand.
CLI::App* AddAuditCommands(CLI::App& app, std::string* db_path, AuditCommand* command);

// Exit status: 0 accepted, 1 failed (no database, no rollback to accept, store error; one line
// on `err`), 2 bad usage (an empty reason).
int RunAuditCommand(CLI::App& audit, const AuditCommand& command, const std::string& db_path,
                    int64_t now_unix_ms, std::ostream& out, std::ostream& err);

}  // namespace vigil::controller
