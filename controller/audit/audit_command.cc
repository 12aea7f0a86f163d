#include "controller/audit/audit_command.h"

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "controller/audit/auditor.h"
#include "storage/sqlite/sqlite_store.h"

namespace vigil::controller {
namespace {

constexpr char kMe[] = "vigil-controller: ";

std::string Operator(const AuditCommand& command) {
  if (!command.by.empty()) {
    return command.by;
  }
  for (const char* name : {"SUDO_USER", "USER"}) {
    if (const char* value = std::getenv(name); value != nullptr && *value != '\0') {
      return value;
    }
  }
  return "unknown";
}

}  // namespace

CLI::App* AddAuditCommands(CLI::App& app, std::string* db_path, AuditCommand* command) {
  CLI::App* audit = app.add_subcommand("audit", "the audit trail's administration");
  audit->require_subcommand(1);
  CLI::App* accept = audit->add_subcommand(
      "accept-rollback",
      "accept a detected rollback or fork (after finding out why), so that the timeline takes "
      "writes again; recorded on the timeline with who and why");
  accept->add_option("--reason", command->reason, "why the rollback is accepted")->required();
  accept->add_option("--by", command->by, "who accepts (default: $SUDO_USER, else $USER)");
  accept->add_option("--db", *db_path, "SQLite database file")->capture_default_str();
  return audit;
}

int RunAuditCommand(CLI::App& audit, const AuditCommand& command, const std::string& db_path,
                    int64_t now_unix_ms, std::ostream& out, std::ostream& err) {
  const std::string reason(absl::StripAsciiWhitespace(command.reason));
  if (reason.empty()) {
    err << kMe << "audit accept-rollback: --reason must say why\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<storage::Store>> opened =
      storage::OpenExistingSqliteStore(db_path);
  if (!opened.ok()) {
    err << kMe << opened.status().message() << '\n';
    return 1;
  }
  storage::Store& store = **opened;
  auto detected = store.ListIncidentEventsOfKind("", kRollbackDetectedKind, 1);
  auto accepted = store.ListIncidentEventsOfKind("", kRollbackAcceptedKind, 1);
  if (!detected.ok() || !accepted.ok()) {
    err << kMe << (detected.ok() ? accepted.status() : detected.status()).message() << '\n';
    return 1;
  }
  if (detected->empty() ||
      (!accepted->empty() && accepted->front().seq() > detected->front().seq())) {
    err << kMe << "no rollback to accept: the audit trail is not on hold\n";
    return 1;
  }
  const v1::TimelineEvent& found = detected->front();
  const std::string by = Operator(command);
  v1::TimelineEvent event;
  event.set_kind(kRollbackAcceptedKind);
  event.set_actor(by);
  event.set_time_unix_ms(now_unix_ms);
  event.set_summary(absl::StrCat("rollback accepted by ", by, ": ", reason));
  event.set_details_json(absl::StrCat("{\"reason\":", AuditJsonString(reason),
                                      ",\"detected_seq\":", found.seq(), "}"));
  absl::StatusOr<v1::TimelineEvent> stored = store.AppendEvent(event);
  if (!stored.ok()) {
    err << kMe << "cannot record the acceptance: " << stored.status().message() << '\n';
    return 1;
  }
  out << "rollback of event " << found.seq() << " accepted as event " << stored->seq()
      << "; a running controller takes timeline writes again within a second\n";
  return 0;
}

}  // namespace vigil::controller
