// Approved remediation: proposals, reviews, signed dispatch in waves, and results, every step on
// the incident's timeline.
//
// propose (validated against the action schema and the agents' own action lists) -> reviews by
// people other than the proposer, with the roles and count the policy asks -> the controller
// signs one command per agent (Ed25519: id, agent, action, params, expiry) and sends it on the
// agent's stream, wave by wave; a wave starts only when every run of the previous one finished
// with exit 0, so a rollout stops at the first failure (the rest are skipped, never sent).
//
// All state lives on the IncidentManager's worker thread (Post), so proposals and the timeline
// change in one order. Public methods only queue work; callbacks run on that thread.
// Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/command_signing.h"
#include "controller/auth/auth.h"
#include "controller/incidents/incident_manager.h"
#include "controller/remediation/policy.h"
#include "storage/store.h"
#include "vigil/v1/agent_service.pb.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::controller {

class RemediationManager {
 public:
  // Sends a signed command on an agent's stream; false when the agent is not connected.
  using CommandSender = std::function<bool(const std::string& agent_id, v1::Command command)>;
  // The actions an agent offers (from its Hello); nullopt for an agent the controller never saw.
  using AgentActions =
      std::function<std::optional<std::vector<std::string>>(const std::string& agent_id)>;
  using ProposalDone = std::function<void(absl::StatusOr<v1::ActionProposal>)>;

  RemediationManager(storage::Store* store, IncidentManager* incidents, const Clock* clock,
                     Policy policy, std::unique_ptr<CommandSigner> signer, CommandSender send,
                     AgentActions agent_actions);

  // Loads proposals left open by a previous run (called before any other method).
  absl::Status Start();

  void Propose(v1::ProposeActionRequest request, Caller caller, ProposalDone done);
  void Review(v1::ReviewActionRequest request, Caller caller, ProposalDone done);
  void OnCommandResult(const std::string& agent_id, const v1::CommandResult& result);
  // Expires proposals and runs that never answered.
  void Tick();

  // Swaps in a new approval policy, already validated. It is applied on the worker thread, so
  // every proposal and review sees either the old policy or the new one, whole. Open proposals
  // keep the approval count and expiry they were made with; who may review them, the command
  // lifetime and the run timeout follow the new policy.
  void SetPolicy(Policy policy);

 private:
  struct RunRef {
    std::string proposal_id;
    int index = 0;  // into proposal.runs
    absl::Time sent;
  };

  // --- on the worker thread ---
  absl::StatusOr<v1::ActionProposal> DoPropose(const v1::ProposeActionRequest& request,
                                               const Caller& caller);
  absl::StatusOr<v1::ActionProposal> DoReview(const v1::ReviewActionRequest& request,
                                              const Caller& caller);
  void DoResult(const std::string& agent_id, const v1::CommandResult& result);
  void DoTick();
  void StartWave(v1::ActionProposal& proposal, int wave);
  // After a run ended: the next wave, or the end of the rollout.
  void Advance(v1::ActionProposal& proposal, int wave);
  void Finish(v1::ActionProposal& proposal, bool succeeded, const std::string& why);
  void Sweep();
  void Save(const v1::ActionProposal& proposal);
  void Record(const v1::ActionProposal& proposal, absl::string_view kind, absl::string_view actor,
              absl::string_view summary, std::string details_json = "");
  std::string Describe(const v1::ActionProposal& proposal) const;

  storage::Store* store_;
  IncidentManager* incidents_;
  const Clock* clock_;
  Policy policy_;  // worker thread
  std::unique_ptr<CommandSigner> signer_;
  CommandSender send_;
  AgentActions agent_actions_;

  // Worker-thread state: proposals still proposed or dispatching, and commands in flight.
  std::map<std::string, v1::ActionProposal> open_;
  std::map<std::string, RunRef> runs_by_command_;
};

}  // namespace vigil::controller
