#include "controller/incidents/incident_report.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "common/model_names.h"
#include "common/status.h"

namespace vigil::controller {
namespace {

std::string Time(int64_t ms) {
  if (ms == 0) {
    return "-";
  }
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

// Table cells must not break the table.
std::string Cell(absl::string_view text) {
  return absl::StrReplaceAll(text, {{"|", "\\|"}, {"\n", " "}, {"\r", ""}});
}

std::string Json(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

std::string Markdown(const v1::GetIncidentResponse& report, const v1::VerifyAuditResponse& audit) {
  const v1::Incident& incident = report.incident();
  std::string md;
  absl::StrAppend(&md, "# ", incident.id(), ": ", incident.title(), "\n\n");
  absl::StrAppend(&md, "| | |\n|---|---|\n");
  absl::StrAppend(&md, "| Severity | ", SeverityName(incident.severity()), " |\n");
  absl::StrAppend(&md, "| State | ", IncidentStateName(incident.state()), " |\n");
  absl::StrAppend(&md, "| Opened | ", Time(incident.opened_unix_ms()), " |\n");
  absl::StrAppend(&md, "| Acknowledged | ", Time(incident.acknowledged_unix_ms()),
                  incident.acknowledged_by().empty() ? "" : " by " + incident.acknowledged_by(),
                  " |\n");
  absl::StrAppend(&md, "| Mitigated | ", Time(incident.mitigated_unix_ms()), " |\n");
  absl::StrAppend(&md, "| Resolved | ", Time(incident.resolved_unix_ms()), " |\n");
  absl::StrAppend(&md, "| Hosts | ", Cell(absl::StrJoin(incident.agents(), ", ")), " |\n");
  absl::StrAppend(&md, "| Services | ", Cell(absl::StrJoin(incident.services(), ", ")), " |\n");
  absl::StrAppend(&md, "| Alerts | ", Cell(absl::StrJoin(incident.alert_rules(), ", ")), " |\n");
  absl::StrAppend(&md, "| Probable cause | ", Cell(incident.probable_cause()), " |\n");
  absl::StrAppend(&md, "| Why | ", Cell(incident.probable_cause_reason()), " |\n\n");

  absl::StrAppend(&md,
                  "## Alerts\n\n| Alert | Host | Severity | State | Value | Fired | Resolved |\n",
                  "|---|---|---|---|---|---|---|\n");
  for (const v1::Alert& a : report.alerts()) {
    absl::StrAppend(&md, "| ", Cell(a.rule()), " | ",
                    Cell(a.agent_id().empty() ? "fleet" : a.agent_id()), " | ",
                    SeverityName(a.severity()), " | ", AlertStateName(a.state()), " | ", a.value(),
                    " | ", Time(a.fired_unix_ms()), " | ", Time(a.resolved_unix_ms()), " |\n");
  }

  absl::StrAppend(&md,
                  "\n## Timeline\n\n| # | Time | Event | By | What |\n|---|---|---|---|---|\n");
  for (const v1::TimelineEvent& e : report.timeline()) {
    absl::StrAppend(&md, "| ", e.seq(), " | ", Time(e.time_unix_ms()), " | ", e.kind(), " | ",
                    Cell(e.actor()), " | ", Cell(e.summary()), " |\n");
  }

  absl::StrAppend(&md, "\n## Remediation\n\n");
  if (report.actions().empty()) {
    absl::StrAppend(&md, "No actions were proposed.\n");
  }
  for (const v1::ActionProposal& p : report.actions()) {
    std::vector<std::string> params;
    for (const auto& [k, v] : p.params()) {
      params.push_back(absl::StrCat(k, "=", v));
    }
    absl::StrAppend(&md, "- ", p.id(), ": `", p.action(), "` ", absl::StrJoin(params, " "), " on ",
                    absl::StrJoin(p.agents(), ", "), " — ", ProposalStateName(p.state()),
                    "; proposed by ", p.proposed_by(), ", approved by ",
                    p.approved_by().empty() ? "nobody" : absl::StrJoin(p.approved_by(), ", "),
                    "\n");
  }

  absl::StrAppend(&md, "\n## Post-incident checklist\n\n");
  for (const v1::ChecklistItem& item : incident.checklist()) {
    absl::StrAppend(
        &md, "- [", item.done() ? "x" : " ", "] ", item.name(),
        item.done() ? absl::StrCat(" (", item.done_by(), ", ", Time(item.done_unix_ms()), ")") : "",
        "\n");
  }

  absl::StrAppend(&md, "\n## Audit\n\n");
  if (!report.timeline().empty()) {
    const v1::TimelineEvent& last = report.timeline(report.timeline_size() - 1);
    absl::StrAppend(&md, "Last event of this incident: #", last.seq(), ", hash `", last.hash(),
                    "`.\n");
  }
  if (audit.ok()) {
    absl::StrAppend(&md, "The audit chain verifies: ", audit.events_checked(),
                    " events checked, head `", audit.head_hash(), "`.\n");
  } else {
    absl::StrAppend(&md, "**The audit chain does NOT verify**: event #", audit.first_bad_seq(),
                    ": ", audit.problem(), "\n");
  }
  return md;
}

}  // namespace

absl::StatusOr<v1::GetIncidentResponse> LoadIncident(storage::Store& store,
                                                     absl::string_view incident_id) {
  ASSIGN_OR_RETURN(std::optional<v1::Incident> incident, store.GetIncident(incident_id));
  if (!incident.has_value()) {
    return absl::NotFoundError(absl::StrCat("no incident '", incident_id, "'"));
  }
  v1::GetIncidentResponse response;
  *response.mutable_incident() = std::move(*incident);
  ASSIGN_OR_RETURN(std::vector<v1::TimelineEvent> events,
                   store.ListEvents(incident_id, 0, 100'000));
  for (v1::TimelineEvent& e : events) {
    *response.add_timeline() = std::move(e);
  }
  ASSIGN_OR_RETURN(std::vector<v1::Alert> alerts, store.ListIncidentAlerts(incident_id));
  for (v1::Alert& a : alerts) {
    *response.add_alerts() = std::move(a);
  }
  ASSIGN_OR_RETURN(std::vector<v1::ActionProposal> actions, store.ListProposals(incident_id));
  for (v1::ActionProposal& p : actions) {
    *response.add_actions() = std::move(p);
  }
  return response;
}

absl::StatusOr<std::string> ExportIncident(storage::Store& store, absl::string_view incident_id,
                                           absl::string_view format) {
  if (format != "markdown" && format != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("export format '", format, "' is not one of: markdown, json"));
  }
  ASSIGN_OR_RETURN(v1::GetIncidentResponse report, LoadIncident(store, incident_id));
  ASSIGN_OR_RETURN(v1::VerifyAuditResponse audit, store.VerifyChain());
  if (format == "markdown") {
    return Markdown(report, audit);
  }
  return absl::StrCat("{\n\"report\": ", Json(report), ",\n\"audit\": ", Json(audit), "}\n");
}

}  // namespace vigil::controller
