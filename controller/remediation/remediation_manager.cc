#include "controller/remediation/remediation_manager.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/action_schema.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/model_names.h"
#include "common/status.h"

namespace vigil::controller {
namespace {

// A run that will change no more: finished, refused, skipped, or with an unknown outcome (which
// a late result may still settle).
bool Terminal(const v1::ActionRun& run) {
  return run.state() == "finished" || run.state() == "refused" || run.state() == "skipped" ||
         run.state() == "unknown";
}

bool Succeeded(const v1::ActionRun& run) {
  return run.state() == "finished" && run.exit_code() == 0;
}

std::string Params(const google::protobuf::Map<std::string, std::string>& params) {
  std::map<std::string, std::string> sorted(params.begin(), params.end());
  std::vector<std::string> parts;
  parts.reserve(sorted.size());
  for (const auto& [k, v] : sorted) {
    parts.push_back(absl::StrCat(k, "=", v));
  }
  return absl::StrJoin(parts, " ");
}

std::string Params(const v1::ActionProposal& p) { return Params(p.params()); }

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

std::string Names(const std::vector<std::string>& names) {
  return names.size() <= 10 ? absl::StrJoin(names, ", ") : absl::StrCat(names.size(), " agents");
}

}  // namespace

RemediationManager::RemediationManager(TimelineWriter* writer, IncidentManager* incidents,
                                       const Clock* clock, Policy policy,
                                       std::unique_ptr<CommandSigner> signer, CommandSender send,
                                       AgentActions agent_actions, Options options)
    : writer_(writer),
      store_(writer->store()),
      incidents_(incidents),
      clock_(clock),
      policy_(std::move(policy)),
      signer_(std::move(signer)),
      send_(std::move(send)),
      agent_actions_(std::move(agent_actions)),
      options_(options) {}

absl::Status RemediationManager::Start() {
  ASSIGN_OR_RETURN(std::vector<v1::ActionProposal> all, store_->ListProposals(""));
  RETURN_IF_ERROR(LoadLedger(all, clock_->Now()));
  return writer_->RunNow([&](Transaction& txn) -> absl::Status {
    for (v1::ActionProposal& p : all) {
      switch (p.state()) {
        case v1::PROPOSED:
          txn.PreserveKey(open_, p.id());
          open_[p.id()] = p;
          break;
        case v1::OUTCOME_UNKNOWN:
          txn.PreserveKey(unknown_, p.id());
          unknown_[p.id()] = p;
          Index(txn, p);
          break;
        case v1::APPROVED:
        case v1::DISPATCHING: {
          // The rollout was under way. Its commands are stored: they go out again, same ids,
          // as their agents connect; agents never run an id twice.
          std::vector<std::string> in_flight;
          std::vector<std::string> lost;
          for (v1::ActionRun& run : *p.mutable_runs()) {
            if (run.state() != "dispatched" && run.state() != "started") {
              continue;
            }
            if (run.signed_command().empty()) {
              // Stored by an earlier version, which saved commands only after sending them.
              run.set_state("unknown");
              run.set_reason("the controller restarted during the rollout and has no copy of "
                             "the command sent; check the host");
              lost.push_back(run.agent_id());
            } else {
              in_flight.push_back(run.agent_id());
            }
          }
          txn.PreserveKey(open_, p.id());
          open_[p.id()] = p;
          Index(txn, p);
          v1::ActionProposal& open = open_[p.id()];
          txn.writes().Save(open);
          RETURN_IF_ERROR(Record(
              txn, open, "action_resumed", "controller",
              absl::StrCat(
                  "the controller restarted during the rollout of ", Describe(open), "; ",
                  in_flight.empty()
                      ? "no command was in flight"
                      : absl::StrCat(in_flight.size(), " command(s) in flight (", Names(in_flight),
                                     ") are sent again with the same ids when their agents "
                                     "connect, and run at most once"),
                  lost.empty()
                      ? ""
                      : absl::StrCat("; the outcome on ", Names(lost), " is unknown"))));
          if (!lost.empty()) {
            for (int i = 0; i < open.runs_size(); ++i) {
              if (open.runs(i).state() == "unknown") {
                RETURN_IF_ERROR(Advance(txn, open, open.runs(i).wave()));
                break;
              }
            }
          }
          break;
        }
        default:
          break;
      }
    }
    std::erase_if(open_, [](const auto& entry) {
      return entry.second.state() != v1::PROPOSED && entry.second.state() != v1::DISPATCHING;
    });
    return absl::OkStatus();
  });
}

void RemediationManager::Propose(v1::ProposeActionRequest request, Caller caller,
                                 ProposalDone done) {
  SubmitForResult<v1::ActionProposal>(
      *writer_,
      [this, request = std::move(request), caller = std::move(caller)](Transaction& txn) {
        return DoPropose(txn, request, caller);
      },
      std::move(done));
}

void RemediationManager::Rearm(v1::RearmBreakerRequest request, Caller caller,
                               std::function<void(absl::StatusOr<v1::RearmBreakerResponse>)> done) {
  SubmitForResult<v1::RearmBreakerResponse>(
      *writer_,
      [this, request = std::move(request), caller = std::move(caller)](Transaction& txn) {
        return DoRearm(txn, request, caller);
      },
      std::move(done));
}

void RemediationManager::Review(v1::ReviewActionRequest request, Caller caller, ProposalDone done) {
  SubmitForResult<v1::ActionProposal>(
      *writer_,
      [this, request = std::move(request), caller = std::move(caller)](Transaction& txn) {
        return DoReview(txn, request, caller);
      },
      std::move(done));
}

void RemediationManager::OnCommandResult(const std::string& agent_id,
                                         const v1::CommandResult& result,
                                         std::function<void()> acknowledge) {
  writer_->Submit(
      [this, agent_id, result](Transaction& txn) { return DoResult(txn, agent_id, result); },
      [agent_id, command_id = result.command_id(),
       acknowledge = std::move(acknowledge)](const absl::Status& status) {
        if (!status.ok()) {
          // Not acknowledged: the agent sends it again after it reconnects.
          spdlog::error("result of command {} from {} is not stored yet: {}", command_id, agent_id,
                        status.message());
          return;
        }
        if (acknowledge) {
          acknowledge();
        }
      });
}

void RemediationManager::OnAgentConnected(const std::string& agent_id) {
  writer_->Submit([this, agent_id](Transaction& txn) {
    const int64_t now_ms = absl::ToUnixMillis(txn.now());
    for (const auto& [command_id, ref] : runs_by_command_) {
      auto it = open_.find(ref.proposal_id);
      if (it == open_.end()) {
        continue;
      }
      const v1::ActionRun& run = it->second.runs(ref.index);
      // Only commands the agent may not have: once it said STARTED it holds the id, and its
      // results come on their own.
      if (run.agent_id() != agent_id || run.state() != "dispatched" ||
          run.signed_command().empty()) {
        continue;
      }
      v1::Command command;
      if (!command.ParseFromString(run.signed_command()) ||
          command.expires_unix_ms() <= now_ms) {
        continue;  // expired: the agent would refuse it; its results, if any, still come
      }
      txn.AfterCommit([this, agent_id, command] {
        if (send_(agent_id, command)) {
          spdlog::info("command {} sent again to {} (same id: it runs at most once)", command.id(),
                       agent_id);
        }
      });
    }
    return absl::OkStatus();
  });
}

void RemediationManager::Tick() {
  writer_->Submit([this](Transaction& txn) { return DoTick(txn); });
}

void RemediationManager::SetPolicy(Policy policy) {
  writer_->Submit([this, policy = std::move(policy)](Transaction& txn) mutable {
    txn.Preserve(policy_);
    policy_ = std::move(policy);
    return absl::OkStatus();
  });
}

std::string RemediationManager::Describe(const v1::ActionProposal& p) const {
  std::string params = Params(p);
  return absl::StrCat(
      p.action(), params.empty() ? "" : " ", params, " on ",
      p.agents_size() == 1 ? p.agents(0) : absl::StrCat(p.agents_size(), " agents"));
}

absl::Status RemediationManager::Record(Transaction& txn, const v1::ActionProposal& proposal,
                                        absl::string_view kind, absl::string_view actor,
                                        absl::string_view summary, std::string details_json) {
  return incidents_->Record(txn, proposal.incident_id(), kind, actor,
                            absl::StrCat(proposal.id(), ": ", summary), std::move(details_json));
}

v1::ActionProposal* RemediationManager::Edit(Transaction& txn, const std::string& id) {
  if (auto it = open_.find(id); it != open_.end()) {
    txn.PreserveKey(open_, id);
    return &it->second;
  }
  if (auto it = unknown_.find(id); it != unknown_.end()) {
    txn.PreserveKey(unknown_, id);
    return &it->second;
  }
  return nullptr;
}

void RemediationManager::Index(Transaction& txn, const v1::ActionProposal& p) {
  for (int i = 0; i < p.runs_size(); ++i) {
    const v1::ActionRun& run = p.runs(i);
    if (!run.command_id().empty() &&
        (run.state() == "dispatched" || run.state() == "started" || run.state() == "unknown")) {
      txn.PreserveKey(runs_by_command_, run.command_id());
      runs_by_command_[run.command_id()] = RunRef{p.id(), i};
    }
  }
}

absl::Time RemediationManager::Deadline(const v1::ActionProposal& p,
                                        const v1::ActionRun& run) const {
  return absl::FromUnixMillis(run.sent_unix_ms()) + policy_.For(p.action()).timeout +
         policy_.command_ttl;
}

absl::StatusOr<v1::ActionProposal> RemediationManager::DoPropose(
    Transaction& txn, const v1::ProposeActionRequest& original, const Caller& caller) {
  v1::ProposeActionRequest request = original;
  v1::ActionProposal p;
  if (request.suggestion() != 0) {
    RETURN_IF_ERROR(FillFromSuggestion(request, p));
  }
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
  const std::vector<std::string> agents(request.agents().begin(), request.agents().end());
  if (absl::Status s = ledger_.Check(request.action(), agents, PlannedRuns(request.action()),
                                     action_policy.breaker, txn.now());
      !s.ok()) {
    return BreakerRefused(request.action(), caller, std::move(s));
  }
  p.set_id(RandomId("act-").substr(0, 12));
  p.set_incident_id(request.incident_id());
  p.set_action(request.action());
  p.mutable_params()->insert(request.params().begin(), request.params().end());
  for (const std::string& agent : request.agents()) {
    p.add_agents(agent);
  }
  p.set_proposed_by(caller.name);
  p.set_state(v1::PROPOSED);
  p.set_proposed_unix_ms(absl::ToUnixMillis(txn.now()));
  p.set_expires_unix_ms(absl::ToUnixMillis(txn.now() + policy_.proposal_ttl));
  p.set_approvals_required(action_policy.approvals);
  p.set_wave_size(request.wave_size() > 0 ? request.wave_size() : policy_.wave_size);
  p.set_reason(request.reason());
  txn.PreserveKey(open_, p.id());
  open_[p.id()] = p;
  txn.writes().Save(p);
  std::vector<std::string> roles;
  for (Role r : action_policy.roles) {
    roles.emplace_back(RoleName(r));
  }
  RETURN_IF_ERROR(Record(
      txn, p, "action_proposed", caller.name,
      absl::StrCat(Describe(p), " proposed by ", caller.name, "; needs ", p.approvals_required(),
                   " approval(s) from ", absl::StrJoin(roles, "/"), ", not the proposer",
                   p.reason().empty() ? "" : absl::StrCat(" (", p.reason(), ")"),
                   p.suggested_by_rule().empty()
                       ? ""
                       : absl::StrCat("; suggested by rule ", p.suggested_by_rule(), ": ",
                                      p.suggestion_evidence())),
      Json(p)));
  return p;
}

absl::StatusOr<v1::ActionProposal> RemediationManager::DoReview(
    Transaction& txn, const v1::ReviewActionRequest& request, const Caller& caller) {
  auto it = open_.find(request.proposal_id());
  if (it == open_.end() || it->second.state() != v1::PROPOSED) {
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
  const v1::ActionProposal& current = it->second;
  const ActionPolicy action_policy = policy_.For(current.action());
  if (!action_policy.roles.contains(caller.role)) {
    std::vector<std::string> roles;
    for (Role r : action_policy.roles) {
      roles.emplace_back(RoleName(r));
    }
    return absl::PermissionDeniedError(absl::StrCat(caller.name, " is a ", RoleName(caller.role),
                                                    "; reviewing ", current.action(), " needs ",
                                                    absl::StrJoin(roles, " or ")));
  }
  if (caller.name == current.proposed_by()) {
    return absl::PermissionDeniedError(
        absl::StrCat(caller.name, " proposed ", current.id(), ": someone else must ",
                     request.approve() ? "approve" : "reject", " it"));
  }
  if (std::find(current.approved_by().begin(), current.approved_by().end(), caller.name) !=
      current.approved_by().end()) {
    return absl::FailedPreconditionError(
        absl::StrCat(caller.name, " already approved ", current.id(), "; it needs another person"));
  }
  if (request.approve() && current.approved_by_size() + 1 >= current.approvals_required()) {
    // The last approval: other runs may have happened since it was proposed.
    const std::vector<std::string> agents(current.agents().begin(), current.agents().end());
    if (absl::Status s = ledger_.Check(current.action(), agents, PlannedRuns(current.action()),
                                       action_policy.breaker, txn.now());
        !s.ok()) {
      return BreakerRefused(current.action(), caller,
                            absl::ResourceExhaustedError(absl::StrCat(
                                "approval of ", current.id(), " refused; ", s.message())));
    }
  }
  v1::ActionProposal& p = *Edit(txn, request.proposal_id());
  const std::string comment =
      request.comment().empty() ? "" : absl::StrCat(": ", request.comment());
  if (!request.approve()) {
    p.set_state(v1::REJECTED);
    p.set_rejected_by(caller.name);
    txn.writes().Save(p);
    RETURN_IF_ERROR(Record(txn, p, "action_rejected", caller.name,
                           absl::StrCat(Describe(p), " rejected by ", caller.name, comment)));
    v1::ActionProposal result = p;
    open_.erase(request.proposal_id());
    return result;
  }
  p.add_approved_by(caller.name);
  RETURN_IF_ERROR(Record(txn, p, "action_approved", caller.name,
                         absl::StrCat(Describe(p), " approved by ", caller.name, " (",
                                      p.approved_by_size(), " of ", p.approvals_required(), ")",
                                      comment)));
  if (p.approved_by_size() < p.approvals_required()) {
    txn.writes().Save(p);
    return p;
  }
  // Approved: plan the waves; the first wave's signed commands are stored with the approval and
  // sent once it is on disk.
  p.set_state(v1::DISPATCHING);
  for (int i = 0; i < p.agents_size(); ++i) {
    v1::ActionRun* run = p.add_runs();
    run->set_agent_id(p.agents(i));
    run->set_state("pending");
    run->set_wave(i / std::max(1, p.wave_size()));
  }
  RETURN_IF_ERROR(StartWave(txn, p, 0));
  txn.writes().Save(p);
  v1::ActionProposal result = p;
  if (p.state() != v1::DISPATCHING) {
    open_.erase(request.proposal_id());
  }
  return result;
}

void RemediationManager::SendAfterCommit(Transaction& txn, const v1::ActionProposal& p,
                                         int index) {
  const v1::ActionRun& run = p.runs(index);
  v1::Command command;
  command.ParseFromString(run.signed_command());
  txn.AfterCommit([this, proposal_id = p.id(), index, agent_id = run.agent_id(), command] {
    if (send_(agent_id, command)) {
      return;
    }
    // Not connected now. Nothing was sent, so the run is refused, unless the agent connected
    // in the meantime and OnAgentConnected sent it (then it is "started" or waits for it).
    writer_->Submit([this, proposal_id, index, agent_id, command](Transaction& txn) {
      v1::ActionProposal* p = Edit(txn, proposal_id);
      if (p == nullptr || p->runs(index).command_id() != command.id() ||
          p->runs(index).state() != "dispatched" || send_(agent_id, command)) {
        return absl::OkStatus();
      }
      v1::ActionRun& run = *p->mutable_runs(index);
      run.set_state("refused");
      run.set_reason("the agent is not connected");
      txn.PreserveKey(runs_by_command_, command.id());
      runs_by_command_.erase(command.id());
      RETURN_IF_ERROR(Record(txn, *p, "action_refused", "controller",
                             absl::StrCat("cannot send ", p->action(), " to ", agent_id,
                                          ": the agent is not connected")));
      RETURN_IF_ERROR(Advance(txn, *p, run.wave()));
      txn.writes().Save(*p);
      return absl::OkStatus();
    });
  });
}

absl::Status RemediationManager::StartWave(Transaction& txn, v1::ActionProposal& p, int wave) {
  const ActionPolicy action_policy = policy_.For(p.action());
  std::vector<std::string> signed_for;
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
    command.set_expires_unix_ms(absl::ToUnixMillis(txn.now() + policy_.command_ttl));
    command.set_incident_id(p.incident_id());
    command.set_timeout_ms(absl::ToInt64Milliseconds(action_policy.timeout));
    run.set_command_id(command.id());
    if (absl::Status s = signer_->Sign(command); !s.ok()) {
      run.set_state("refused");
      run.set_reason(std::string(s.message()));
      continue;
    }
    run.set_signed_command(command.SerializeAsString());
    run.set_sent_unix_ms(absl::ToUnixMillis(txn.now()));
    run.set_state("dispatched");
    // Counted by the breaker from now on: it may run as soon as it is stored.
    const absl::Time counted_at = absl::FromUnixMillis(run.sent_unix_ms());
    ledger_.AddRun(p.action(), run.agent_id(), counted_at);
    txn.OnRollback([this, action = p.action(), agent = run.agent_id(), counted_at] {
      ledger_.RemoveRun(action, agent, counted_at);
    });
    txn.PreserveKey(runs_by_command_, command.id());
    runs_by_command_[command.id()] = RunRef{p.id(), i};
    SendAfterCommit(txn, p, i);
    signed_for.push_back(run.agent_id());
  }
  if (!signed_for.empty()) {
    RETURN_IF_ERROR(Record(txn, p, "action_dispatched", "controller",
                           absl::StrCat("wave ", wave + 1, "/", WaveCount(p), ": signed ",
                                        p.action(), " for ", Names(signed_for),
                                        "; stored, then sent")));
  }
  return Advance(txn, p, wave);
}

absl::Status RemediationManager::Advance(Transaction& txn, v1::ActionProposal& p, int wave) {
  bool done = true;
  bool unknown = false;
  std::vector<std::string> failed;
  for (const v1::ActionRun& run : p.runs()) {
    if (run.wave() != wave) {
      continue;
    }
    done = done && Terminal(run);
    if (Terminal(run) && !Succeeded(run)) {
      failed.push_back(run.agent_id());
      unknown = unknown || run.state() == "unknown";
    }
  }
  if (!done || p.state() != v1::DISPATCHING) {
    return absl::OkStatus();
  }
  if (!failed.empty()) {
    int skipped = 0;
    for (v1::ActionRun& run : *p.mutable_runs()) {
      if (run.wave() > wave) {
        run.set_state("skipped");
        run.set_reason(absl::StrCat("wave ", wave + 1, " did not succeed"));
        ++skipped;
      }
    }
    return Finish(txn, p, unknown ? v1::OUTCOME_UNKNOWN : v1::FAILED,
                  absl::StrCat("stopped at wave ", wave + 1, ": ",
                               unknown ? "outcome unknown or failed on " : "failed on ",
                               Names(failed),
                               skipped > 0 ? absl::StrCat("; ", skipped, " agent(s) skipped")
                                           : ""));
  }
  if (wave + 1 < WaveCount(p)) {
    return StartWave(txn, p, wave + 1);
  }
  return Finish(txn, p, v1::SUCCEEDED,
                absl::StrCat("succeeded on all ", p.runs_size(), " agent(s)"));
}

absl::Status RemediationManager::Finish(Transaction& txn, v1::ActionProposal& p,
                                        v1::ProposalState state, const std::string& why) {
  p.set_state(state);
  if (state != v1::SUCCEEDED) {
    p.set_reason(why);
  }
  const absl::string_view kind = state == v1::SUCCEEDED  ? "action_succeeded"
                                 : state == v1::FAILED   ? "action_failed"
                                                         : "action_outcome_unknown";
  RETURN_IF_ERROR(Record(txn, p, kind, "controller", absl::StrCat(Describe(p), ": ", why)));
  if (state == v1::OUTCOME_UNKNOWN) {
    // Kept where a late result can still find it.
    txn.PreserveKey(unknown_, p.id());
    unknown_[p.id()] = p;
  }
  if (state != v1::SUCCEEDED) {
    txn.AfterCommit([id = p.id(), what = Describe(p), why, state] {
      spdlog::warn("action {} ({}) {}: {}", id, what, ProposalStateName(state), why);
    });
  }
  return absl::OkStatus();
}

absl::Status RemediationManager::DoResult(Transaction& txn, const std::string& agent_id,
                                          const v1::CommandResult& result) {
  auto ref = runs_by_command_.find(result.command_id());
  if (ref == runs_by_command_.end()) {
    return absl::OkStatus();  // settled already (a resend), or not ours: nothing waits for it
  }
  const RunRef run_ref = ref->second;
  v1::ActionProposal* p = Edit(txn, run_ref.proposal_id);
  if (p == nullptr) {
    txn.PreserveKey(runs_by_command_, result.command_id());
    runs_by_command_.erase(result.command_id());
    return absl::OkStatus();
  }
  v1::ActionRun& run = *p->mutable_runs(run_ref.index);
  if (run.agent_id() != agent_id) {
    txn.AfterCommit([agent_id, command = result.command_id(), owner = run.agent_id()] {
      spdlog::warn("agent {} answered for command {} of agent {}; ignored", agent_id, command,
                   owner);
    });
    return absl::OkStatus();
  }
  const bool late = run.state() == "unknown";
  const std::string prefix = late ? "late result: " : "";
  switch (result.phase()) {
    case v1::CommandResult::DUPLICATE:
      // A command sent again after a restart that the agent had already taken: it did not run
      // again; the first run's results come (or came) on their own.
      return absl::OkStatus();
    case v1::CommandResult::STARTED:
      if (run.state() != "dispatched" && !late) {
        return absl::OkStatus();  // a resend of what is stored already
      }
      if (!late) {
        run.set_state("started");
      }
      txn.writes().Save(*p);
      return Record(txn, *p, "action_started", agent_id,
                    absl::StrCat(prefix, p->action(), " started on ", agent_id));
    case v1::CommandResult::FINISHED:
      run.set_state("finished");
      run.set_exit_code(result.exit_code());
      run.set_output_tail(result.output_tail());
      run.set_duration_ms(result.duration_ms());
      run.set_reason(result.reason());
      RETURN_IF_ERROR(Record(
          txn, *p, "action_finished", agent_id,
          absl::StrCat(prefix, p->action(), " on ", agent_id, " finished: exit ",
                       result.exit_code(), " in ", result.duration_ms(), " ms",
                       result.reason().empty() ? "" : absl::StrCat(" (", result.reason(), ")")),
          Json(result)));
      break;
    case v1::CommandResult::REFUSED:
      run.set_state("refused");
      run.set_reason(result.reason());
      RETURN_IF_ERROR(Record(
          txn, *p, "action_refused", agent_id,
          absl::StrCat(prefix, agent_id, " refused ", p->action(), ": ", result.reason()),
          Json(result)));
      break;
    default:
      return absl::OkStatus();
  }
  txn.PreserveKey(runs_by_command_, result.command_id());
  runs_by_command_.erase(result.command_id());
  if (late) {
    // The rollout ended without this answer; the proposal says what is now known.
    bool still_unknown = false;
    bool all_succeeded = true;
    for (const v1::ActionRun& r : p->runs()) {
      still_unknown = still_unknown || r.state() == "unknown";
      all_succeeded = all_succeeded && Succeeded(r);
    }
    if (!still_unknown) {
      p->set_state(all_succeeded ? v1::SUCCEEDED : v1::FAILED);
      RETURN_IF_ERROR(Record(txn, *p, all_succeeded ? "action_succeeded" : "action_failed",
                             "controller",
                             absl::StrCat(Describe(*p), ": every outcome is known now (",
                                          all_succeeded ? "all succeeded" : "not all succeeded",
                                          ")")));
      txn.PreserveKey(unknown_, p->id());
      v1::ActionProposal settled = *p;
      unknown_.erase(settled.id());
      txn.writes().Save(settled);
      return absl::OkStatus();
    }
    txn.writes().Save(*p);
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(Advance(txn, *p, run.wave()));
  txn.writes().Save(*p);
  if (p->state() != v1::DISPATCHING) {
    open_.erase(std::string(p->id()));  // preserved by Edit
  }
  return absl::OkStatus();
}

absl::Status RemediationManager::DoTick(Transaction& txn) {
  const absl::Time now = txn.now();
  // Only forgets runs past any window a policy may set: nothing to take back on a rollback.
  ledger_.Prune(now);
  std::vector<std::string> expired;
  for (auto& [id, p] : open_) {
    if (p.state() == v1::PROPOSED && absl::ToUnixMillis(now) >= p.expires_unix_ms()) {
      expired.push_back(id);
    }
  }
  for (const std::string& id : expired) {
    v1::ActionProposal& p = *Edit(txn, id);
    p.set_state(v1::EXPIRED);
    txn.writes().Save(p);
    RETURN_IF_ERROR(Record(txn, p, "action_expired", "controller",
                           absl::StrCat(Describe(p), " expired with ", p.approved_by_size(),
                                        " of ", p.approvals_required(), " approval(s)")));
    open_.erase(id);
  }
  // Runs past their deadline: first "no result yet" (the agent may be cut off and report
  // later), then, past patience, an unknown outcome.
  std::vector<std::pair<std::string, RunRef>> overdue;
  for (const auto& [command_id, ref] : runs_by_command_) {
    auto it = open_.find(ref.proposal_id);
    if (it == open_.end()) {
      continue;
    }
    const v1::ActionRun& run = it->second.runs(ref.index);
    if ((run.state() == "dispatched" || run.state() == "started") &&
        now > Deadline(it->second, run)) {
      overdue.emplace_back(command_id, ref);
    }
  }
  for (const auto& [command_id, ref] : overdue) {
    v1::ActionProposal* p = Edit(txn, ref.proposal_id);
    if (p == nullptr || p->state() != v1::DISPATCHING) {
      continue;
    }
    v1::ActionRun& run = *p->mutable_runs(ref.index);
    const absl::Time deadline = Deadline(*p, run);
    if (now > deadline + options_.result_patience) {
      run.set_state("unknown");
      run.set_reason(absl::StrCat("no result from the agent within ",
                                  absl::FormatDuration(now - absl::FromUnixMillis(run.sent_unix_ms())),
                                  "; whether it ran is unknown"));
      RETURN_IF_ERROR(Record(txn, *p, "action_unknown", "controller",
                             absl::StrCat(p->action(), " on ", run.agent_id(), ": ",
                                          run.reason())));
      RETURN_IF_ERROR(Advance(txn, *p, run.wave()));
      txn.writes().Save(*p);
      if (p->state() != v1::DISPATCHING) {
        open_.erase(std::string(p->id()));
      }
    } else if (run.reason().empty()) {
      run.set_reason("no result yet");
      RETURN_IF_ERROR(Record(
          txn, *p, "action_waiting", "controller",
          absl::StrCat(p->action(), " on ", run.agent_id(), ": no result yet (",
                       run.state() == "started" ? "it started" : "sent",
                       "; the agent resends results when it is back); waiting up to ",
                       absl::FormatDuration(options_.result_patience), " more")));
      txn.writes().Save(*p);
    }
  }
  return absl::OkStatus();
}

absl::Status RemediationManager::FillFromSuggestion(v1::ProposeActionRequest& request,
                                                    v1::ActionProposal& p) {
  if (!request.agents().empty() || !request.action().empty() || !request.params().empty()) {
    return absl::InvalidArgumentError(
        "a suggestion fills agents, action and parameters: give none of them with it");
  }
  if (suggestions_ == nullptr) {
    return absl::FailedPreconditionError("this controller has no rule suggestions");
  }
  const std::shared_ptr<const SuggestionRules> rules = suggestions_->Get();
  ASSIGN_OR_RETURN(
      std::vector<v1::SuggestedAction> suggestions,
      LoadSuggestions(*store_, request.incident_id(), *rules,
                      [this](const std::string& agent, const std::string& action) {
                        std::optional<std::vector<std::string>> offered = agent_actions_(agent);
                        return offered.has_value() &&
                               std::find(offered->begin(), offered->end(), action) !=
                                   offered->end();
                      }));
  const int n = request.suggestion();
  if (n < 1 || n > static_cast<int>(suggestions.size())) {
    return absl::NotFoundError(absl::StrCat("incident ", request.incident_id(), " has ",
                                            suggestions.size(), " suggestion(s); there is no ",
                                            "suggestion ", n));
  }
  const v1::SuggestedAction& s = suggestions[n - 1];
  std::string what = absl::StrCat(s.action(), " ", Params(s.params()), " on ", s.agent_id());
  if (!request.suggestion_fingerprint().empty() &&
      request.suggestion_fingerprint() != s.fingerprint()) {
    return absl::FailedPreconditionError(
        absl::StrCat("suggestion ", n, " changed since it was read (it is now ", what,
                     "): read the incident again before proposing it"));
  }
  if (!s.missing().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("suggestion ", n, " (", what, ") cannot be proposed yet: ", s.missing()));
  }
  request.add_agents(s.agent_id());
  request.set_action(s.action());
  request.mutable_params()->insert(s.params().begin(), s.params().end());
  p.set_suggested_by_rule(s.rule());
  p.set_suggestion_evidence(s.evidence());
  return absl::OkStatus();
}

absl::Status RemediationManager::BreakerRefused(const std::string& action, const Caller& caller,
                                               absl::Status refusal) {
  spdlog::warn("{} by {}: {}", action, caller.name, refusal.message());
  absl::MutexLock lock(&refusals_mu_);
  ++refusals_[action];
  return refusal;
}

std::map<std::string, uint64_t> RemediationManager::BreakerRefusals() const {
  absl::MutexLock lock(&refusals_mu_);
  return refusals_;
}

std::map<std::string, int> RemediationManager::PlannedRuns(const std::string& action) const {
  std::map<std::string, int> planned;
  for (const auto& [id, p] : open_) {
    if (p.state() != v1::DISPATCHING || p.action() != action) {
      continue;
    }
    for (const v1::ActionRun& run : p.runs()) {
      if (run.state() == "pending") {
        ++planned[run.agent_id()];
      }
    }
  }
  return planned;
}

namespace {

// The details of a breaker_rearmed event: what it re-armed, and where.
struct RearmRecord {
  std::string action;
  std::vector<std::string> agents;
};

std::string RearmJson(const RearmRecord& r) {
  google::protobuf::Struct details;
  (*details.mutable_fields())["action"].set_string_value(r.action);
  auto* agents = (*details.mutable_fields())["agents"].mutable_list_value();
  for (const std::string& agent : r.agents) {
    agents->add_values()->set_string_value(agent);
  }
  return Json(details);
}

std::optional<RearmRecord> ParseRearm(const std::string& json) {
  google::protobuf::Struct details;
  if (!google::protobuf::util::JsonStringToMessage(json, &details).ok()) {
    return std::nullopt;
  }
  RearmRecord r;
  auto action = details.fields().find("action");
  if (action == details.fields().end() || action->second.string_value().empty()) {
    return std::nullopt;
  }
  r.action = action->second.string_value();
  if (auto agents = details.fields().find("agents"); agents != details.fields().end()) {
    for (const google::protobuf::Value& v : agents->second.list_value().values()) {
      r.agents.push_back(v.string_value());
    }
  }
  return r;
}

}  // namespace

absl::Status RemediationManager::LoadLedger(const std::vector<v1::ActionProposal>& all,
                                            absl::Time now) {
  const absl::Time horizon = now - RunLedger::kHorizon;
  std::set<std::string> incidents;  // where re-arms of the horizon may be recorded
  for (const v1::ActionProposal& p : all) {
    if (absl::FromUnixMillis(p.proposed_unix_ms()) < horizon - RunLedger::kHorizon) {
      continue;  // too old to have runs or re-arms inside the horizon
    }
    incidents.insert(p.incident_id());
    for (const v1::ActionRun& run : p.runs()) {
      if (run.sent_unix_ms() > 0) {
        ledger_.AddRun(p.action(), run.agent_id(), absl::FromUnixMillis(run.sent_unix_ms()));
      }
    }
  }
  ASSIGN_OR_RETURN(std::vector<v1::Incident> active, store_->ListIncidents("active"));
  for (const v1::Incident& incident : active) {
    incidents.insert(incident.id());
  }
  for (const std::string& id : incidents) {
    ASSIGN_OR_RETURN(std::vector<v1::TimelineEvent> rearms,
                     store_->ListIncidentEventsOfKind(id, "breaker_rearmed", 1000));
    for (const v1::TimelineEvent& event : rearms) {
      if (std::optional<RearmRecord> r = ParseRearm(event.details_json()); r.has_value()) {
        ledger_.Rearm(r->action, r->agents, absl::FromUnixMillis(event.time_unix_ms()));
      }
    }
  }
  ledger_.Prune(now);
  return absl::OkStatus();
}

absl::StatusOr<v1::RearmBreakerResponse> RemediationManager::DoRearm(
    Transaction& txn, const v1::RearmBreakerRequest& request, const Caller& caller) {
  if (FindAction(request.action()) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown action '", request.action(), "'"));
  }
  if (request.reason().empty() || request.reason().size() > 1000) {
    return absl::InvalidArgumentError(
        "a re-arm needs a reason (1 to 1000 characters): it goes on the timeline");
  }
  if (request.agents_size() > 10000) {
    return absl::InvalidArgumentError("at most 10000 agents per re-arm");
  }
  ASSIGN_OR_RETURN(std::optional<v1::Incident> incident, store_->GetIncident(request.incident_id()));
  if (!incident.has_value()) {
    return absl::NotFoundError(absl::StrCat("no incident '", request.incident_id(), "'"));
  }
  RearmRecord record{request.action(), {request.agents().begin(), request.agents().end()}};
  const BreakerLimits limits = policy_.For(request.action()).breaker;
  const std::string scope =
      record.agents.empty() ? "across the fleet and on every host"
                            : absl::StrCat("on ", Names(record.agents));
  std::string summary = absl::StrCat(
      "circuit breaker of ", request.action(), " re-armed ", scope, " by ", caller.name, ": ",
      request.reason(), " (runs before now no longer count against ", limits.per_host,
      " per host / ", limits.per_fleet, " per fleet in ", absl::FormatDuration(limits.window),
      ")");
  RETURN_IF_ERROR(incidents_->Record(txn, request.incident_id(), "breaker_rearmed", caller.name,
                                     summary, RearmJson(record)));
  txn.Preserve(ledger_);
  ledger_.Rearm(record.action, record.agents, txn.now());
  v1::RearmBreakerResponse response;
  response.set_summary(std::move(summary));
  return response;
}

}  // namespace vigil::controller
