#include "controller/remediation/remediation_manager.h"

#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/action_schema.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/model_names.h"

namespace vigil::controller {
namespace {

bool Terminal(const v1::ActionRun& run) {
  return run.state() == "finished" || run.state() == "refused" || run.state() == "skipped";
}

bool Succeeded(const v1::ActionRun& run) {
  return run.state() == "finished" && run.exit_code() == 0;
}

std::string Params(const v1::ActionProposal& p) {
  std::vector<std::string> parts;
  std::map<std::string, std::string> sorted(p.params().begin(), p.params().end());
  for (const auto& [k, v] : sorted) {
    parts.push_back(absl::StrCat(k, "=", v));
  }
  return absl::StrJoin(parts, " ");
}

std::string Json(const google::protobuf::Message& m) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  return json;
}

int WaveCount(const v1::ActionProposal& p) {
  int waves = 0;
  for (const v1::ActionRun& run : p.runs()) {
    waves = std::max(waves, run.wave() + 1);
  }
  return waves;
}

}  // namespace

RemediationManager::RemediationManager(storage::Store* store, IncidentManager* incidents,
                                       const Clock* clock, Policy policy,
                                       std::unique_ptr<CommandSigner> signer, CommandSender send,
                                       AgentActions agent_actions)
    : store_(store),
      incidents_(incidents),
      clock_(clock),
      policy_(std::move(policy)),
      signer_(std::move(signer)),
      send_(std::move(send)),
      agent_actions_(std::move(agent_actions)) {}

absl::Status RemediationManager::Start() {
  absl::StatusOr<std::vector<v1::ActionProposal>> all = store_->ListProposals("");
  if (!all.ok()) {
    return all.status();
  }
  for (v1::ActionProposal& p : *all) {
    if (p.state() == v1::PROPOSED) {
      open_[p.id()] = p;
    } else if (p.state() == v1::APPROVED || p.state() == v1::DISPATCHING) {
      // Commands may have run, but their results went to a controller that is gone: say so
      // rather than send anything again.
      v1::ActionProposal copy = p;
      incidents_->Post([this, copy]() mutable {
        for (v1::ActionRun& run : *copy.mutable_runs()) {
          if (!Terminal(run)) {
            run.set_state("skipped");
            run.set_reason("the controller restarted during the rollout; result unknown");
          }
        }
        Finish(copy, false, "the controller restarted during the rollout; check the hosts");
      });
    }
  }
  return absl::OkStatus();
}

void RemediationManager::Propose(v1::ProposeActionRequest request, Caller caller,
                                 ProposalDone done) {
  incidents_->Post([this, request = std::move(request), caller = std::move(caller),
                    done = std::move(done)] { done(DoPropose(request, caller)); });
}

void RemediationManager::Review(v1::ReviewActionRequest request, Caller caller, ProposalDone done) {
  incidents_->Post([this, request = std::move(request), caller = std::move(caller),
                    done = std::move(done)] { done(DoReview(request, caller)); });
}

void RemediationManager::OnCommandResult(const std::string& agent_id,
                                         const v1::CommandResult& result) {
  incidents_->Post([this, agent_id, result] { DoResult(agent_id, result); });
}

void RemediationManager::Tick() {
  incidents_->Post([this] { DoTick(); });
}

void RemediationManager::SetPolicy(Policy policy) {
  incidents_->Post([this, policy = std::move(policy)]() mutable { policy_ = std::move(policy); });
}

std::string RemediationManager::Describe(const v1::ActionProposal& p) const {
  std::string params = Params(p);
  return absl::StrCat(
      p.action(), params.empty() ? "" : " ", params, " on ",
      p.agents_size() == 1 ? p.agents(0) : absl::StrCat(p.agents_size(), " agents"));
}

void RemediationManager::Save(const v1::ActionProposal& proposal) {
  if (absl::Status s = store_->SaveProposal(proposal); !s.ok()) {
    spdlog::error("cannot save action proposal {}: {}", proposal.id(), s.message());
  }
}

void RemediationManager::Record(const v1::ActionProposal& proposal, absl::string_view kind,
                                absl::string_view actor, absl::string_view summary,
                                std::string details_json) {
  (void)incidents_->Record(proposal.incident_id(), kind, actor,
                           absl::StrCat(proposal.id(), ": ", summary), std::move(details_json));
}

absl::StatusOr<v1::ActionProposal> RemediationManager::DoPropose(
    const v1::ProposeActionRequest& request, const Caller& caller) {
  absl::StatusOr<std::optional<v1::Incident>> incident = store_->GetIncident(request.incident_id());
  if (!incident.ok()) {
    return incident.status();
  }
  if (!incident->has_value()) {
    return absl::NotFoundError(absl::StrCat("no incident '", request.incident_id(), "'"));
  }
  if ((*incident)->state() == v1::INCIDENT_RESOLVED) {
    return absl::FailedPreconditionError(
        absl::StrCat("incident ", request.incident_id(), " is resolved: nothing to remediate"));
  }
  if (FindAction(request.action()) == nullptr) {
    std::vector<std::string> names;
    for (const ActionSpec& spec : AllActions()) {
      names.emplace_back(spec.name);
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown action '", request.action(), "' (actions: ", absl::StrJoin(names, ", "), ")"));
  }
  const std::map<std::string, std::string> params(request.params().begin(), request.params().end());
  if (absl::Status s = CheckActionParams(request.action(), params); !s.ok()) {
    return s;
  }
  if (request.agents().empty()) {
    return absl::InvalidArgumentError("name at least one agent (--agent)");
  }
  std::set<std::string> seen;
  for (const std::string& agent : request.agents()) {
    if (!seen.insert(agent).second) {
      return absl::InvalidArgumentError(absl::StrCat("agent ", agent, " is named twice"));
    }
    std::optional<std::vector<std::string>> actions = agent_actions_(agent);
    if (!actions.has_value()) {
      return absl::NotFoundError(absl::StrCat("no agent '", agent, "'"));
    }
    if (std::find(actions->begin(), actions->end(), request.action()) == actions->end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "agent ", agent, " does not offer ", request.action(), " (its config allows: ",
          actions->empty() ? "no actions" : absl::StrJoin(*actions, ", "), ")"));
    }
  }
  if (request.wave_size() < 0) {
    return absl::InvalidArgumentError("wave size must be positive");
  }
  const ActionPolicy action_policy = policy_.For(request.action());
  v1::ActionProposal p;
  p.set_id(RandomId("act-").substr(0, 12));
  p.set_incident_id(request.incident_id());
  p.set_action(request.action());
  p.mutable_params()->insert(request.params().begin(), request.params().end());
  for (const std::string& agent : request.agents()) {
    p.add_agents(agent);
  }
  p.set_proposed_by(caller.name);
  p.set_state(v1::PROPOSED);
  p.set_proposed_unix_ms(clock_->NowUnixMillis());
  p.set_expires_unix_ms(absl::ToUnixMillis(clock_->Now() + policy_.proposal_ttl));
  p.set_approvals_required(action_policy.approvals);
  p.set_wave_size(request.wave_size() > 0 ? request.wave_size() : policy_.wave_size);
  p.set_reason(request.reason());
  Save(p);
  open_[p.id()] = p;
  std::vector<std::string> roles;
  for (Role r : action_policy.roles) {
    roles.emplace_back(RoleName(r));
  }
  Record(p, "action_proposed", caller.name,
         absl::StrCat(Describe(p), " proposed by ", caller.name, "; needs ", p.approvals_required(),
                      " approval(s) from ", absl::StrJoin(roles, "/"), ", not the proposer",
                      p.reason().empty() ? "" : absl::StrCat(" (", p.reason(), ")")),
         Json(p));
  return p;
}

absl::StatusOr<v1::ActionProposal> RemediationManager::DoReview(
    const v1::ReviewActionRequest& request, const Caller& caller) {
  auto it = open_.find(request.proposal_id());
  if (it == open_.end()) {
    absl::StatusOr<std::optional<v1::ActionProposal>> stored =
        store_->GetProposal(request.proposal_id());
    if (!stored.ok()) {
      return stored.status();
    }
    if (!stored->has_value()) {
      return absl::NotFoundError(absl::StrCat("no action proposal '", request.proposal_id(), "'"));
    }
    return absl::FailedPreconditionError(absl::StrCat("proposal ", request.proposal_id(), " is ",
                                                      ProposalStateName((*stored)->state()),
                                                      ": it can no longer be reviewed"));
  }
  v1::ActionProposal& p = it->second;
  const ActionPolicy action_policy = policy_.For(p.action());
  if (!action_policy.roles.contains(caller.role)) {
    std::vector<std::string> roles;
    for (Role r : action_policy.roles) {
      roles.emplace_back(RoleName(r));
    }
    return absl::PermissionDeniedError(absl::StrCat(caller.name, " is a ", RoleName(caller.role),
                                                    "; reviewing ", p.action(), " needs ",
                                                    absl::StrJoin(roles, " or ")));
  }
  if (caller.name == p.proposed_by()) {
    return absl::PermissionDeniedError(
        absl::StrCat(caller.name, " proposed ", p.id(), ": someone else must ",
                     request.approve() ? "approve" : "reject", " it"));
  }
  if (std::find(p.approved_by().begin(), p.approved_by().end(), caller.name) !=
      p.approved_by().end()) {
    return absl::FailedPreconditionError(
        absl::StrCat(caller.name, " already approved ", p.id(), "; it needs another person"));
  }
  const std::string comment =
      request.comment().empty() ? "" : absl::StrCat(": ", request.comment());
  if (!request.approve()) {
    p.set_state(v1::REJECTED);
    p.set_rejected_by(caller.name);
    Save(p);
    Record(p, "action_rejected", caller.name,
           absl::StrCat(Describe(p), " rejected by ", caller.name, comment));
    v1::ActionProposal result = p;
    open_.erase(it);
    return result;
  }
  p.add_approved_by(caller.name);
  Record(p, "action_approved", caller.name,
         absl::StrCat(Describe(p), " approved by ", caller.name, " (", p.approved_by_size(), " of ",
                      p.approvals_required(), ")", comment));
  if (p.approved_by_size() < p.approvals_required()) {
    Save(p);
    return p;
  }
  // Approved: plan the waves and send the first.
  p.set_state(v1::DISPATCHING);
  for (int i = 0; i < p.agents_size(); ++i) {
    v1::ActionRun* run = p.add_runs();
    run->set_agent_id(p.agents(i));
    run->set_state("pending");
    run->set_wave(i / std::max(1, p.wave_size()));
  }
  StartWave(p, 0);
  v1::ActionProposal result = p;
  Sweep();
  return result;
}

void RemediationManager::StartWave(v1::ActionProposal& p, int wave) {
  const ActionPolicy action_policy = policy_.For(p.action());
  const absl::Time now = clock_->Now();
  std::vector<std::string> sent;
  for (int i = 0; i < p.runs_size(); ++i) {
    v1::ActionRun& run = *p.mutable_runs(i);
    if (run.wave() != wave) {
      continue;
    }
    v1::Command command;
    command.set_id(RandomId("cmd-"));
    command.set_agent_id(run.agent_id());
    command.set_action(p.action());
    command.mutable_params()->insert(p.params().begin(), p.params().end());
    command.set_expires_unix_ms(absl::ToUnixMillis(now + policy_.command_ttl));
    command.set_incident_id(p.incident_id());
    command.set_timeout_ms(absl::ToInt64Milliseconds(action_policy.timeout));
    run.set_command_id(command.id());
    if (absl::Status s = signer_->Sign(command); !s.ok()) {
      run.set_state("refused");
      run.set_reason(std::string(s.message()));
      continue;
    }
    if (!send_(run.agent_id(), command)) {
      run.set_state("refused");
      run.set_reason("the agent is not connected");
      Record(p, "action_refused", "controller",
             absl::StrCat("cannot send ", p.action(), " to ", run.agent_id(),
                          ": the agent is not connected"));
      continue;
    }
    run.set_state("dispatched");
    runs_by_command_[command.id()] = RunRef{p.id(), i, now};
    sent.push_back(run.agent_id());
  }
  if (!sent.empty()) {
    Record(p, "action_dispatched", "controller",
           absl::StrCat("wave ", wave + 1, "/", WaveCount(p), ": signed ", p.action(), " sent to ",
                        sent.size() <= 10 ? absl::StrJoin(sent, ", ")
                                          : absl::StrCat(sent.size(), " agents")));
  }
  Save(p);
  Advance(p, wave);
}

void RemediationManager::Advance(v1::ActionProposal& p, int wave) {
  bool done = true;
  std::vector<std::string> failed;
  for (const v1::ActionRun& run : p.runs()) {
    if (run.wave() != wave) {
      continue;
    }
    done = done && Terminal(run);
    if (Terminal(run) && !Succeeded(run)) {
      failed.push_back(run.agent_id());
    }
  }
  if (!done) {
    return;
  }
  if (!failed.empty()) {
    int skipped = 0;
    for (v1::ActionRun& run : *p.mutable_runs()) {
      if (run.wave() > wave) {
        run.set_state("skipped");
        run.set_reason(absl::StrCat("wave ", wave + 1, " failed"));
        ++skipped;
      }
    }
    Finish(p, false,
           absl::StrCat("stopped at wave ", wave + 1, ": failed on ", absl::StrJoin(failed, ", "),
                        skipped > 0 ? absl::StrCat("; ", skipped, " agent(s) skipped") : ""));
    return;
  }
  if (wave + 1 < WaveCount(p)) {
    StartWave(p, wave + 1);
    return;
  }
  Finish(p, true, absl::StrCat("succeeded on all ", p.runs_size(), " agent(s)"));
}

void RemediationManager::Finish(v1::ActionProposal& p, bool succeeded, const std::string& why) {
  p.set_state(succeeded ? v1::SUCCEEDED : v1::FAILED);
  if (!succeeded) {
    p.set_reason(why);
  }
  Save(p);
  Record(p, succeeded ? "action_succeeded" : "action_failed", "controller",
         absl::StrCat(Describe(p), ": ", why));
  if (!succeeded) {
    spdlog::warn("action {} ({}) failed: {}", p.id(), Describe(p), why);
  }
}

void RemediationManager::Sweep() {
  // Finished proposals leave the open set here, never while a reference to them is live.
  for (auto it = open_.begin(); it != open_.end();) {
    const v1::ProposalState state = it->second.state();
    if (state == v1::PROPOSED || state == v1::DISPATCHING) {
      ++it;
    } else {
      it = open_.erase(it);
    }
  }
}

void RemediationManager::DoResult(const std::string& agent_id, const v1::CommandResult& result) {
  auto ref = runs_by_command_.find(result.command_id());
  if (ref == runs_by_command_.end()) {
    return;  // late or unknown (e.g. after a timeout): nothing waits for it
  }
  auto it = open_.find(ref->second.proposal_id);
  if (it == open_.end()) {
    runs_by_command_.erase(ref);
    return;
  }
  v1::ActionProposal& p = it->second;
  v1::ActionRun& run = *p.mutable_runs(ref->second.index);
  if (run.agent_id() != agent_id) {
    spdlog::warn("agent {} answered for command {} of agent {}; ignored", agent_id,
                 result.command_id(), run.agent_id());
    return;
  }
  const int wave = run.wave();
  switch (result.phase()) {
    case v1::CommandResult::STARTED:
      run.set_state("started");
      // The timeline says it now; the stored proposal catches up when the wave ends, so a wave
      // of a hundred costs one proposal write, not two hundred.
      Record(p, "action_started", agent_id, absl::StrCat(p.action(), " started on ", agent_id));
      return;
    case v1::CommandResult::FINISHED:
      run.set_state("finished");
      run.set_exit_code(result.exit_code());
      run.set_output_tail(result.output_tail());
      run.set_duration_ms(result.duration_ms());
      run.set_reason(result.reason());
      Record(p, "action_finished", agent_id,
             absl::StrCat(p.action(), " on ", agent_id, " finished: exit ", result.exit_code(),
                          " in ", result.duration_ms(), " ms",
                          result.reason().empty() ? "" : absl::StrCat(" (", result.reason(), ")")),
             Json(result));
      break;
    case v1::CommandResult::REFUSED:
      run.set_state("refused");
      run.set_reason(result.reason());
      Record(p, "action_refused", agent_id,
             absl::StrCat(agent_id, " refused ", p.action(), ": ", result.reason()), Json(result));
      break;
    default:
      return;
  }
  runs_by_command_.erase(ref);
  Advance(p, wave);  // saves when the wave is over
  Sweep();
}

void RemediationManager::DoTick() {
  const absl::Time now = clock_->Now();
  std::vector<std::string> expired;
  for (auto& [id, p] : open_) {
    if (p.state() == v1::PROPOSED && absl::ToUnixMillis(now) >= p.expires_unix_ms()) {
      expired.push_back(id);
    }
  }
  for (const std::string& id : expired) {
    v1::ActionProposal& p = open_[id];
    p.set_state(v1::EXPIRED);
    Save(p);
    Record(p, "action_expired", "controller",
           absl::StrCat(Describe(p), " expired with ", p.approved_by_size(), " of ",
                        p.approvals_required(), " approval(s)"));
    open_.erase(id);
  }
  // Runs that never answered: failed after their timeout and the command's lifetime.
  std::vector<std::pair<std::string, RunRef>> overdue;
  for (const auto& [command_id, ref] : runs_by_command_) {
    auto it = open_.find(ref.proposal_id);
    if (it == open_.end()) {
      continue;
    }
    const absl::Duration limit = policy_.For(it->second.action()).timeout + policy_.command_ttl;
    if (now - ref.sent > limit) {
      overdue.emplace_back(command_id, ref);
    }
  }
  for (const auto& [command_id, ref] : overdue) {
    runs_by_command_.erase(command_id);
    auto it = open_.find(ref.proposal_id);
    if (it == open_.end()) {
      continue;
    }
    v1::ActionProposal& p = it->second;
    v1::ActionRun& run = *p.mutable_runs(ref.index);
    run.set_state("finished");
    run.set_exit_code(-1);
    run.set_reason("no result from the agent in time");
    Record(p, "action_finished", "controller",
           absl::StrCat(p.action(), " on ", run.agent_id(), ": no result from the agent in time"));
    Advance(p, run.wave());
  }
  Sweep();
}

}  // namespace vigil::controller
