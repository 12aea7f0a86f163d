#include "cli/actions_cmd.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <memory>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace vigil::cli {
namespace {

std::string Params(const google::protobuf::Map<std::string, std::string>& params) {
  return FormatLabels(params);
}

std::string Approvals(const v1::ActionProposal& action) {
  return absl::StrCat(action.approved_by_size(), "/", std::max(1, action.approvals_required()));
}

struct ProposeOptions {
  std::string incident;
  std::vector<std::string> agents;
  std::string action;
  std::vector<std::string> params;
  int wave_size = 0;
  std::string reason;
  int suggestion = 0;
};

// The fingerprint of suggestion `n` of `incident` as the controller shows it now, so that the
// proposal is refused if the suggestion changes before it lands.
bool ReadSuggestion(CommandEnv& env, const std::string& incident, int n, std::string* fingerprint) {
  v1::GetIncidentRequest request;
  request.set_incident_id(incident);
  request.set_page_size(1);
  v1::GetIncidentResponse response;
  if (!env.Call("GetIncident", &v1::ControlService::StubInterface::GetIncident, request,
                &response)) {
    return false;
  }
  for (const v1::SuggestedAction& s : response.suggestions()) {
    if (s.number() == n) {
      *fingerprint = s.fingerprint();
      if (!env.json()) {
        env.out() << "Suggestion " << n << ": " << OneLine(s.action()) << " "
                  << FormatLabels(s.params()) << " on " << OneLine(s.agent_id()) << "\n  from "
                  << OneLine(s.evidence()) << "\n";
      }
      return true;
    }
  }
  env.Fail(absl::StrCat("incident ", OneLine(incident), " has ", response.suggestions_size(),
                        " suggestion(s); there is no suggestion ", n,
                        " (see vigil incident show ", OneLine(incident), ")"));
  return false;
}

int RunPropose(CommandEnv& env, const ProposeOptions& options) {
  if (options.suggestion > 0 &&
      (!options.agents.empty() || !options.action.empty() || !options.params.empty())) {
    return env.UsageError("--suggestion fills --agent, --action and --param: give none of them",
                          "action propose");
  }
  if (options.suggestion == 0 && (options.agents.empty() || options.action.empty())) {
    return env.UsageError("name --agent and --action, or --suggestion N", "action propose");
  }
  auto params = ParseParams(options.params);
  if (!params.ok()) return env.UsageError(params.status().message(), "action propose");
  v1::ProposeActionRequest request;
  request.set_incident_id(options.incident);
  if (options.suggestion > 0) {
    std::string fingerprint;
    if (!ReadSuggestion(env, options.incident, options.suggestion, &fingerprint)) {
      return kExitFailed;
    }
    request.set_suggestion(options.suggestion);
    request.set_suggestion_fingerprint(fingerprint);
  }
  for (const std::string& agent : options.agents) request.add_agents(agent);
  request.set_action(options.action);
  for (auto& [key, value] : *params) (*request.mutable_params())[key] = value;
  request.set_wave_size(options.wave_size);
  request.set_reason(options.reason);
  v1::ActionProposal proposal;
  if (!env.Call("ProposeAction", &v1::ControlService::StubInterface::ProposeAction, request,
                &proposal)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(proposal);
  PrintActionDetail(proposal, env.clock().Now(), env.out());
  return kExitOk;
}

struct ReviewOptions {
  std::string id;
  std::string comment;
};

int RunReview(CommandEnv& env, bool approve, const ReviewOptions& options) {
  v1::ReviewActionRequest request;
  request.set_proposal_id(options.id);
  request.set_approve(approve);
  request.set_comment(options.comment);
  v1::ActionProposal proposal;
  if (!env.Call("ReviewAction", &v1::ControlService::StubInterface::ReviewAction, request,
                &proposal)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(proposal);
  PrintActionDetail(proposal, env.clock().Now(), env.out());
  return kExitOk;
}

struct RearmOptions {
  std::string incident;
  std::string action;
  std::vector<std::string> agents;
  std::string reason;
};

int RunRearm(CommandEnv& env, const RearmOptions& options) {
  v1::RearmBreakerRequest request;
  request.set_incident_id(options.incident);
  request.set_action(options.action);
  for (const std::string& agent : options.agents) request.add_agents(agent);
  request.set_reason(options.reason);
  v1::RearmBreakerResponse response;
  if (!env.Call("RearmBreaker", &v1::ControlService::StubInterface::RearmBreaker, request,
                &response)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(response);
  env.out() << OneLine(response.summary()) << '\n';
  return kExitOk;
}

int RunActions(CommandEnv& env, const std::string& incident) {
  v1::ListActionsRequest request;
  request.set_incident_id(incident);
  v1::ListActionsResponse response;
  if (!env.Call("ListActions", &v1::ControlService::StubInterface::ListActions, request,
                &response)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(response);
  PrintActionsTable(response.actions(), env.clock().Now(), env.out());
  return kExitOk;
}

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> ParseParams(
    const std::vector<std::string>& items) {
  std::map<std::string, std::string> params;
  for (const std::string& item : items) {
    std::pair<std::string, std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    if (item.find('=') == std::string::npos || kv.first.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--param '", item, "' is not KEY=VALUE"));
    }
    if (!params.emplace(kv.first, kv.second).second) {
      return absl::InvalidArgumentError(absl::StrCat("--param ", kv.first, " is given twice"));
    }
  }
  return params;
}

void PrintActionsTable(const google::protobuf::RepeatedPtrField<v1::ActionProposal>& actions,
                       absl::Time now, std::ostream& out, absl::string_view indent) {
  Table table({"ID", "INCIDENT", "ACTION", "PARAMS", "AGENTS", "STATE", "APPROVALS", "PROPOSED BY",
               "PROPOSED"});
  for (const v1::ActionProposal& action : actions) {
    table.AddRow({action.id(), action.incident_id().empty() ? "-" : action.incident_id(),
                  action.action(), Params(action.params()), JoinOrDash(action.agents()),
                  ProposalStateName(action.state()), Approvals(action),
                  action.proposed_by().empty() ? "-" : action.proposed_by(),
                  FormatAgo(action.proposed_unix_ms(), now)});
  }
  table.Print(out, indent);
}

void PrintActionDetail(const v1::ActionProposal& action, absl::Time now, std::ostream& out) {
  out << "Action " << OneLine(action.id()) << ": " << OneLine(action.action()) << " on "
      << OneLine(absl::StrJoin(action.agents(), ", ")) << '\n';
  Table summary({"", ""});
  summary.AddRow({"Incident:", action.incident_id().empty() ? "-" : action.incident_id()});
  summary.AddRow({"State:", ProposalStateName(action.state())});
  summary.AddRow({"Params:", Params(action.params())});
  summary.AddRow({"Reason:", action.reason().empty() ? "-" : action.reason()});
  summary.AddRow(
      {"Proposed:", absl::StrCat(FormatTimestamp(action.proposed_unix_ms()), " by ",
                                 action.proposed_by().empty() ? "-" : action.proposed_by())});
  summary.AddRow({"Approvals:", absl::StrCat(Approvals(action), " (",
                                             action.approved_by().empty()
                                                 ? "none yet"
                                                 : absl::StrJoin(action.approved_by(), ", "),
                                             ")")});
  if (!action.rejected_by().empty()) summary.AddRow({"Rejected by:", action.rejected_by()});
  summary.AddRow({"Expires:", action.expires_unix_ms() > 0
                                  ? FormatTimestamp(action.expires_unix_ms())
                                  : std::string("-")});
  summary.AddRow({"Wave size:", action.wave_size() > 0 ? absl::StrCat(action.wave_size())
                                                       : std::string("all at once")});
  std::ostringstream block;
  summary.Print(block, "  ");
  std::string text = block.str();
  out << text.substr(text.find('\n') + 1);
  if (action.runs().empty()) return;
  out << "\nRuns:\n";
  Table runs({"AGENT", "WAVE", "STATE", "EXIT", "DURATION", "REASON", "OUTPUT"});
  for (const v1::ActionRun& run : action.runs()) {
    bool finished = run.state() == "finished";
    // The last line of the output tail is the one that usually says what happened.
    absl::string_view tail = absl::StripTrailingAsciiWhitespace(run.output_tail());
    size_t newline = tail.rfind('\n');
    std::string output =
        OneLine(newline == absl::string_view::npos ? tail : tail.substr(newline + 1));
    runs.AddRow({run.agent_id(), absl::StrCat(run.wave()), run.state(),
                 finished ? absl::StrCat(run.exit_code()) : "-",
                 run.duration_ms() > 0 ? FormatDurationMs(run.duration_ms()) : "-",
                 run.reason().empty() ? "-" : run.reason(), output.empty() ? "-" : output});
  }
  runs.Print(out, "  ");
}

void AddActionsCommands(CLI::App& app, CommandEnv& env) {
  CLI::App* action = app.add_subcommand("action", "Propose, approve or reject a remediation");
  action->require_subcommand(1);

  auto propose_options = std::make_shared<ProposeOptions>();
  CLI::App* propose =
      action->add_subcommand("propose", "Propose an action on one or more agents of an incident");
  propose->add_option("incident", propose_options->incident, "incident id")->required();
  propose->add_option("--agent", propose_options->agents, "target agent (repeat for several)")
      ->allow_extra_args(false);
  propose->add_option("--action", propose_options->action, "action name, e.g. restart_service");
  propose
      ->add_option("--suggestion", propose_options->suggestion,
                   "propose suggested fix N of the incident as filled (see incident show)")
      ->check(CLI::PositiveNumber);
  propose->add_option("--param", propose_options->params, "action parameter KEY=VALUE (repeat)")
      ->allow_extra_args(false);
  propose
      ->add_option("--wave-size", propose_options->wave_size,
                   "agents per rollout wave (default: all at once)")
      ->check(CLI::NonNegativeNumber);
  propose->add_option("--reason", propose_options->reason, "why, for the approvers");
  propose->callback([&env, propose_options] {
    env.SetAction([&env, propose_options] { return RunPropose(env, *propose_options); });
  });

  for (bool approve : {true, false}) {
    auto options = std::make_shared<ReviewOptions>();
    CLI::App* review =
        action->add_subcommand(approve ? "approve" : "reject",
                               approve ? "Approve a proposed action" : "Reject a proposed action");
    review->add_option("id", options->id, "proposal id")->required();
    review->add_option("--comment", options->comment, "why, on the timeline");
    review->callback([&env, options, approve] {
      env.SetAction([&env, options, approve] { return RunReview(env, approve, *options); });
    });
  }

  auto rearm_options = std::make_shared<RearmOptions>();
  CLI::App* rearm = action->add_subcommand(
      "rearm", "Re-arm an action's circuit breaker (admin), on an incident's timeline");
  rearm->add_option("incident", rearm_options->incident, "incident the re-arm belongs to")
      ->required();
  rearm->add_option("--action", rearm_options->action, "action name, e.g. restart_service")
      ->required();
  rearm
      ->add_option("--agent", rearm_options->agents,
                   "only on this agent (repeat; default: fleet-wide and every host)")
      ->allow_extra_args(false);
  rearm->add_option("--reason", rearm_options->reason, "why, on the timeline")->required();
  rearm->callback([&env, rearm_options] {
    env.SetAction([&env, rearm_options] { return RunRearm(env, *rearm_options); });
  });

  auto incident = std::make_shared<std::string>();
  CLI::App* actions = app.add_subcommand("actions", "List proposed and past actions");
  actions->add_option("--incident", *incident, "only this incident's actions");
  actions->callback(
      [&env, incident] { env.SetAction([&env, incident] { return RunActions(env, *incident); }); });
}

}  // namespace vigil::cli
