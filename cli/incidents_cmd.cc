#include "cli/incidents_cmd.h"

#include <CLI/CLI.hpp>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/actions_cmd.h"

namespace vigil::cli {
namespace {

using Operation = v1::UpdateIncidentRequest::Operation;

std::string Hosts(const v1::Incident& incident) {
  constexpr int kShown = 3;
  if (incident.agents_size() <= kShown + 1) return JoinOrDash(incident.agents());
  std::vector<std::string> shown(incident.agents().begin(), incident.agents().begin() + kShown);
  return absl::StrCat(absl::StrJoin(shown, ","), ",+", incident.agents_size() - kShown);
}

// "2023-11-14 22:13:20Z (5m ago)", with " by WHO" when known; "-" when it never happened.
std::string When(int64_t unix_ms, absl::Time now, absl::string_view by = "") {
  if (unix_ms <= 0) return "-";
  return absl::StrCat(FormatTimestamp(unix_ms), " (", FormatAgo(unix_ms, now), ")",
                      by.empty() ? "" : " by ", by);
}

int RunAlerts(CommandEnv& env, bool all) {
  v1::ListAlertsRequest request;
  request.set_include_resolved(all);
  v1::ListAlertsResponse response;
  if (!env.Call("ListAlerts", &v1::ControlService::StubInterface::ListAlerts, request, &response)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(response);
  PrintAlertsTable(response.alerts(), env.clock().Now(), env.out());
  return kExitOk;
}

int RunIncidents(CommandEnv& env, const std::string& state) {
  v1::ListIncidentsRequest request;
  request.set_state(state);
  v1::ListIncidentsResponse response;
  if (!env.Call("ListIncidents", &v1::ControlService::StubInterface::ListIncidents, request,
                &response)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(response);
  PrintIncidentsTable(response, env.clock().Now(), env.out());
  return kExitOk;
}

// Timeline events asked for per GetIncident call; the controller may send fewer.
constexpr int kShowPageSize = 5000;

int RunShow(CommandEnv& env, const std::string& id) {
  // The controller sends the timeline by pages; the incident is shown whole, as one response.
  v1::GetIncidentRequest request;
  request.set_incident_id(id);
  request.set_page_size(kShowPageSize);
  v1::GetIncidentResponse whole;
  for (bool first = true;; first = false) {
    v1::GetIncidentResponse page;
    if (!env.Call("GetIncident", &v1::ControlService::StubInterface::GetIncident, request,
                  &page)) {
      return kExitFailed;
    }
    const bool more = page.has_next_after_seq();
    const uint64_t next = page.next_after_seq();
    if (first) {
      whole = std::move(page);
    } else {
      // The incident as of the last page matches the timeline read up to there.
      *whole.mutable_incident() = std::move(*page.mutable_incident());
      for (v1::TimelineEvent& event : *page.mutable_timeline()) {
        *whole.add_timeline() = std::move(event);
      }
    }
    if (!more) break;
    if (next <= request.after_seq()) {
      return env.Fail(absl::StrCat("GetIncident ", OneLine(id), ": the controller's next page "
                                   "starts after seq ", next, ", not after ",
                                   request.after_seq(), " (a broken cursor)"));
    }
    request.set_after_seq(next);
  }
  whole.clear_next_after_seq();
  if (env.json()) return env.PrintJson(whole);
  PrintIncidentDetail(whole, env.clock().Now(), env.out());
  return kExitOk;
}

struct UpdateOptions {
  std::string id;
  std::vector<std::string> words;  // note, summary or checklist item
  std::string severity;
};

// "SEV1", "sev1" or "1".
bool ParseSeverity(absl::string_view text, v1::Severity* severity) {
  std::string upper = absl::AsciiStrToUpper(text);
  if (upper.size() == 1) upper = "SEV" + upper;
  return v1::Severity_Parse(upper, severity) && *severity != v1::SEVERITY_UNSPECIFIED;
}

int RunUpdate(CommandEnv& env, Operation operation, absl::string_view verb,
              const UpdateOptions& options) {
  v1::UpdateIncidentRequest request;
  request.set_incident_id(options.id);
  request.set_operation(operation);
  std::string text = absl::StrJoin(options.words, " ");
  if (operation == v1::UpdateIncidentRequest::CHECK) {
    request.set_checklist_item(text);
  } else {
    request.set_text(text);
  }
  if (operation == v1::UpdateIncidentRequest::SET_SEVERITY) {
    v1::Severity severity;
    if (!ParseSeverity(options.severity, &severity)) {
      return env.UsageError(
          absl::StrCat("severity '", options.severity, "' is not one of SEV1, SEV2, SEV3, SEV4"),
          "incident severity");
    }
    request.set_severity(severity);
  }
  v1::Incident incident;
  if (!env.Call("UpdateIncident", &v1::ControlService::StubInterface::UpdateIncident, request,
                &incident)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(incident);
  env.out() << "incident " << OneLine(incident.id()) << " " << verb << ": now "
            << IncidentStateName(incident.state()) << ", " << SeverityName(incident.severity())
            << '\n';
  return kExitOk;
}

void AddUpdate(CLI::App& group, CommandEnv& env, const std::string& name,
               const std::string& description, Operation operation, const std::string& verb,
               const std::string& words_name, bool words_required) {
  auto options = std::make_shared<UpdateOptions>();
  CLI::App* sub = group.add_subcommand(name, description);
  sub->add_option("id", options->id, "incident id")->required();
  if (operation == v1::UpdateIncidentRequest::SET_SEVERITY) {
    sub->add_option("severity", options->severity, "SEV1 (worst) to SEV4")->required();
  }
  if (!words_name.empty()) {
    CLI::Option* words = sub->add_option(words_name, options->words, words_name);
    if (words_required) words->required();
  }
  sub->callback([&env, options, operation, verb] {
    env.SetAction(
        [&env, options, operation, verb] { return RunUpdate(env, operation, verb, *options); });
  });
}

}  // namespace

void PrintAlertsTable(const google::protobuf::RepeatedPtrField<v1::Alert>& alerts, absl::Time now,
                      std::ostream& out, absl::string_view indent) {
  Table table({"ID", "RULE", "SEV", "STATE", "AGENT", "VALUE", "SINCE", "INCIDENT", "SUMMARY"});
  for (const v1::Alert& alert : alerts) {
    int64_t since =
        alert.fired_unix_ms() > 0 ? alert.fired_unix_ms() : alert.active_since_unix_ms();
    table.AddRow(
        {alert.id(), alert.rule(), SeverityName(alert.severity()), AlertStateName(alert.state()),
         alert.agent_id().empty() ? "(fleet)" : alert.agent_id(), FormatNumber(alert.value()),
         FormatAgo(since, now), alert.incident_id().empty() ? "-" : alert.incident_id(),
         alert.summary().empty() ? alert.expr() : alert.summary()});
  }
  table.Print(out, indent);
}

void PrintIncidentsTable(const v1::ListIncidentsResponse& response, absl::Time now,
                         std::ostream& out) {
  Table table({"ID", "SEV", "STATE", "TITLE", "HOSTS", "OPENED", "PROBABLE CAUSE"});
  for (const v1::Incident& incident : response.incidents()) {
    table.AddRow({incident.id(), SeverityName(incident.severity()),
                  IncidentStateName(incident.state()), incident.title(), Hosts(incident),
                  FormatAgo(incident.opened_unix_ms(), now),
                  incident.probable_cause().empty() ? "-" : incident.probable_cause()});
  }
  table.Print(out);
}

void PrintIncidentDetail(const v1::GetIncidentResponse& response, absl::Time now,
                         std::ostream& out) {
  const v1::Incident& incident = response.incident();
  out << "Incident " << OneLine(incident.id()) << ": " << OneLine(incident.title()) << '\n';
  Table summary({"", ""});
  summary.AddRow({"Severity:", SeverityName(incident.severity())});
  summary.AddRow({"State:", IncidentStateName(incident.state())});
  summary.AddRow({"Opened:", When(incident.opened_unix_ms(), now)});
  summary.AddRow(
      {"Acknowledged:", When(incident.acknowledged_unix_ms(), now, incident.acknowledged_by())});
  summary.AddRow({"Mitigated:", When(incident.mitigated_unix_ms(), now)});
  summary.AddRow({"Resolved:", When(incident.resolved_unix_ms(), now)});
  summary.AddRow({"Hosts:", absl::StrJoin(incident.agents(), ", ")});
  summary.AddRow({"Services:", absl::StrJoin(incident.services(), ", ")});
  summary.AddRow({"Alert rules:", absl::StrJoin(incident.alert_rules(), ", ")});
  std::string cause = incident.probable_cause().empty() ? "-" : incident.probable_cause();
  if (!incident.probable_cause_reason().empty()) {
    absl::StrAppend(&cause, " (", incident.probable_cause_reason(), ")");
  }
  summary.AddRow({"Probable cause:", cause});
  summary.AddRow({"Last event:", absl::StrCat("#", incident.last_event_seq())});
  // The empty header row of the two-column block is dropped.
  std::ostringstream block;
  summary.Print(block, "  ");
  std::string text = block.str();
  out << text.substr(text.find('\n') + 1);

  out << "\nChecklist:\n";
  if (incident.checklist().empty()) out << "  (none)\n";
  for (const v1::ChecklistItem& item : incident.checklist()) {
    out << "  [" << (item.done() ? "x" : " ") << "] " << OneLine(item.name());
    if (item.done()) {
      out << "  (" << (item.done_by().empty() ? "-" : OneLine(item.done_by())) << ", "
          << FormatTimestamp(item.done_unix_ms()) << ")";
    }
    out << '\n';
  }

  out << "\nAlerts:\n";
  if (response.alerts().empty()) {
    out << "  (none)\n";
  } else {
    PrintAlertsTable(response.alerts(), now, out, "  ");
  }

  out << "\nActions:\n";
  if (response.actions().empty()) {
    out << "  (none)\n";
  } else {
    PrintActionsTable(response.actions(), now, out, "  ");
  }

  if (!response.suggestions().empty()) {
    // Each with what filled it; `vigil action propose INC --suggestion N` proposes one as shown.
    out << "\nSuggested fixes:\n";
    Table suggestions({"N", "RULE", "AGENT", "ACTION", "PARAMS", "READY"});
    for (const v1::SuggestedAction& s : response.suggestions()) {
      suggestions.AddRow({absl::StrCat(s.number()), s.rule(), s.agent_id(), s.action(),
                          s.params().empty() ? "-" : FormatLabels(s.params()),
                          s.missing().empty() ? "yes" : absl::StrCat("no: ", s.missing())});
    }
    suggestions.Print(out, "  ");
    for (const v1::SuggestedAction& s : response.suggestions()) {
      out << "  " << s.number() << ". evidence: " << OneLine(s.evidence()) << '\n';
    }
  }

  out << "\nTimeline:\n";
  if (response.timeline().empty()) {
    out << "  (none)\n";
  } else {
    Table timeline({"TIME", "SEQ", "KIND", "ACTOR", "SUMMARY"});
    for (const v1::TimelineEvent& event : response.timeline()) {
      timeline.AddRow({FormatTimestamp(event.time_unix_ms()), absl::StrCat(event.seq()),
                       event.kind(), event.actor().empty() ? "-" : event.actor(), event.summary()});
    }
    timeline.Print(out, "  ");
  }
}

void AddIncidentsCommands(CLI::App& app, CommandEnv& env) {
  auto all = std::make_shared<bool>(false);
  CLI::App* alerts = app.add_subcommand("alerts", "List firing and pending alerts");
  alerts->add_flag("--all", *all, "include resolved alerts");
  alerts->callback([&env, all] { env.SetAction([&env, all] { return RunAlerts(env, *all); }); });

  auto state = std::make_shared<std::string>();
  CLI::App* incidents = app.add_subcommand("incidents", "List incidents");
  incidents
      ->add_option("--state", *state,
                   "open, acknowledged, mitigated, resolved, active (not resolved) or all")
      ->check(CLI::IsMember({"open", "acknowledged", "mitigated", "resolved", "active", "all"}));
  incidents->callback(
      [&env, state] { env.SetAction([&env, state] { return RunIncidents(env, *state); }); });

  CLI::App* incident = app.add_subcommand("incident", "Show or update one incident");
  incident->require_subcommand(1);
  auto show_id = std::make_shared<std::string>();
  CLI::App* show = incident->add_subcommand("show", "Everything about one incident");
  show->add_option("id", *show_id, "incident id")->required();
  show->callback(
      [&env, show_id] { env.SetAction([&env, show_id] { return RunShow(env, *show_id); }); });

  AddUpdate(*incident, env, "ack", "Acknowledge: you are on it",
            v1::UpdateIncidentRequest::ACKNOWLEDGE, "acknowledged", "note", false);
  AddUpdate(*incident, env, "note", "Add a note to the timeline", v1::UpdateIncidentRequest::NOTE,
            "noted", "text", true);
  AddUpdate(*incident, env, "mitigate", "Mark as mitigated (the bleeding stopped)",
            v1::UpdateIncidentRequest::MITIGATE, "mitigated", "note", false);
  AddUpdate(*incident, env, "resolve", "Resolve, with a summary",
            v1::UpdateIncidentRequest::RESOLVE, "resolved", "summary", false);
  AddUpdate(*incident, env, "check", "Mark a checklist item done", v1::UpdateIncidentRequest::CHECK,
            "checked", "item", true);
  AddUpdate(*incident, env, "severity", "Change the severity",
            v1::UpdateIncidentRequest::SET_SEVERITY, "severity set", "", false);
}

}  // namespace vigil::cli
