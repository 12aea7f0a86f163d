// Approved remediation: proposals, reviews, signed dispatch in waves, and results, every step on
// the incident's timeline.
//
// propose (validated against the action schema and the agents' own action lists) -> reviews by
// people other than the proposer, with the roles and count the policy asks -> the controller
// signs one command per agent (Ed25519: id, agent, action, params, expiry) and sends it on the
// agent's stream, wave by wave; a wave starts only when every run of the previous one finished
// with exit 0, so a rollout stops at the first failure (the rest are skipped, never sent).
//
// Exactly once: a wave's signed commands, with their ids, are stored together with the approval
// (or the previous wave's end) before any is sent. After a controller restart a rollout resumes:
// the same stored commands are sent again when their agents connect, and an agent that already
// accepted one answers DUPLICATE and resends its results instead of running it twice. Agents
// resend results until acknowledged, and a result is acknowledged only once it is stored. A run
// with no result by its deadline is "no result yet" on the timeline, not a failure; only after
// `result_patience` does it become outcome-unknown, and a result that comes later still lands.
//
// All state lives on the controller's TimelineWriter thread, changed inside its transactions.
// Public methods only queue work; callbacks run on that thread. Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/command_signing.h"
#include "controller/auth/auth.h"
#include "controller/incidents/incident_manager.h"
#include "controller/remediation/circuit_breaker.h"
#include "controller/remediation/policy.h"
#include "controller/remediation/suggestions.h"
#include "controller/timeline/timeline_writer.h"
#include "storage/store.h"
#include "vigil/v1/agent_service.pb.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::controller {

class RemediationManager {
 public:
  struct Options {
    // How long past its deadline a run may stay without a result before its outcome is declared
    // unknown (an agent may be cut off, then come back and report).
    absl::Duration result_patience = absl::Hours(1);
  };
  // Sends a signed command on an agent's stream; false when the agent is not connected.
  using CommandSender = std::function<bool(const std::string& agent_id, v1::Command command)>;
  // The actions an agent offers (from its Hello); nullopt for an agent the controller never saw.
  using AgentActions =
      std::function<std::optional<std::vector<std::string>>(const std::string& agent_id)>;
  using ProposalDone = std::function<void(absl::StatusOr<v1::ActionProposal>)>;

  RemediationManager(TimelineWriter* writer, IncidentManager* incidents, const Clock* clock,
                     Policy policy, std::unique_ptr<CommandSigner> signer, CommandSender send,
                     AgentActions agent_actions, Options options);
  RemediationManager(TimelineWriter* writer, IncidentManager* incidents, const Clock* clock,
                     Policy policy, std::unique_ptr<CommandSigner> signer, CommandSender send,
                     AgentActions agent_actions)
      : RemediationManager(writer, incidents, clock, std::move(policy), std::move(signer),
                           std::move(send), std::move(agent_actions), Options()) {}

  // Loads proposals left open by a previous run and says on their timelines how each resumes.
  // Before the writer starts.
  absl::Status Start();

  // The rules' suggestions, for proposals made from one (`suggestion` in the request). Before
  // Start; `book` outlives this manager. Without it, suggestions cannot be proposed.
  void UseSuggestions(const SuggestionBook* book) { suggestions_ = book; }

  // Refused (ResourceExhausted) past the action's circuit breaker; checked again when the last
  // approval comes, since other runs may have happened in between.
  void Propose(v1::ProposeActionRequest request, Caller caller, ProposalDone done);
  void Review(v1::ReviewActionRequest request, Caller caller, ProposalDone done);
  // Re-arms the circuit breaker of an action (admins only: checked by the caller's interceptor),
  // on the incident's timeline with the reason.
  void Rearm(v1::RearmBreakerRequest request, Caller caller,
             std::function<void(absl::StatusOr<v1::RearmBreakerResponse>)> done);
  // `acknowledge` runs once the result is stored (or known to need nothing stored), so the agent
  // may forget it; never for a result that failed to store.
  void OnCommandResult(const std::string& agent_id, const v1::CommandResult& result,
                       std::function<void()> acknowledge = nullptr);
  // An agent's stream was accepted: commands it has not answered are sent again (same ids).
  void OnAgentConnected(const std::string& agent_id);
  // Expires proposals; notes runs without results; declares outcomes unknown past patience.
  void Tick();

  // Proposals and last approvals refused by a circuit breaker since start, by action (for
  // /metrics: a breaker that trips is worth an alert). Refusals are logged, not put on the
  // timeline: a loop hitting a breaker would otherwise flood the audit chain. Thread-safe.
  std::map<std::string, uint64_t> BreakerRefusals() const;

  // Swaps in a new approval policy, already validated. It is applied on the writer thread, so
  // every proposal and review sees either the old policy or the new one, whole. Open proposals
  // keep the approval count and expiry they were made with; who may review them, the command
  // lifetime and the run timeout follow the new policy.
  void SetPolicy(Policy policy);

 private:
  struct RunRef {
    std::string proposal_id;
    int index = 0;  // into proposal.runs
  };

  // --- on the writer thread, inside a transaction ---
  absl::StatusOr<v1::ActionProposal> DoPropose(Transaction& txn,
                                               const v1::ProposeActionRequest& request,
                                               const Caller& caller);
  absl::StatusOr<v1::ActionProposal> DoReview(Transaction& txn,
                                              const v1::ReviewActionRequest& request,
                                              const Caller& caller);
  absl::StatusOr<v1::RearmBreakerResponse> DoRearm(Transaction& txn,
                                                   const v1::RearmBreakerRequest& request,
                                                   const Caller& caller);
  // Replaces a `suggestion` request by the suggestion it names, as filled now.
  absl::Status FillFromSuggestion(v1::ProposeActionRequest& request, v1::ActionProposal& p);
  // The runs of `action` approved but not yet signed, by agent.
  std::map<std::string, int> PlannedRuns(const std::string& action) const;
  // Rebuilds the breakers' ledger from stored proposals and re-arm events (at Start).
  absl::Status LoadLedger(const std::vector<v1::ActionProposal>& all, absl::Time now);
  absl::Status DoResult(Transaction& txn, const std::string& agent_id,
                        const v1::CommandResult& result);
  absl::Status DoTick(Transaction& txn);
  // Signs and stores the wave's commands; they are sent once the transaction commits.
  absl::Status StartWave(Transaction& txn, v1::ActionProposal& proposal, int wave);
  // After a run ended: the next wave, or the end of the rollout.
  absl::Status Advance(Transaction& txn, v1::ActionProposal& proposal, int wave);
  absl::Status Finish(Transaction& txn, v1::ActionProposal& proposal, v1::ProposalState state,
                      const std::string& why);
  // The open proposal `id`, preserved for rollback; null when not open.
  v1::ActionProposal* Edit(Transaction& txn, const std::string& id);
  void Index(Transaction& txn, const v1::ActionProposal& proposal);
  // Sends the stored command of run `index` after the commit.
  void SendAfterCommit(Transaction& txn, const v1::ActionProposal& proposal, int index);
  absl::Status Record(Transaction& txn, const v1::ActionProposal& proposal,
                      absl::string_view kind, absl::string_view actor, absl::string_view summary,
                      std::string details_json = "");
  std::string Describe(const v1::ActionProposal& proposal) const;
  absl::Time Deadline(const v1::ActionProposal& proposal, const v1::ActionRun& run) const;

  TimelineWriter* const writer_;
  storage::Store* const store_;
  IncidentManager* const incidents_;
  const Clock* const clock_;
  Policy policy_;  // writer thread
  std::unique_ptr<CommandSigner> signer_;
  CommandSender send_;
  AgentActions agent_actions_;
  const Options options_;

  // Writer-thread state: proposals still proposed or dispatching, and commands in flight
  // (including runs of finished proposals whose outcome is unknown: a late result still lands).
  std::map<std::string, v1::ActionProposal> open_;
  std::map<std::string, RunRef> runs_by_command_;
  std::map<std::string, v1::ActionProposal> unknown_;  // outcome-unknown proposals, by id
  RunLedger ledger_;                                   // writer thread
  // Counts a refusal by the breaker and logs it; returns `refusal` unchanged.
  absl::Status BreakerRefused(const std::string& action, const Caller& caller, absl::Status refusal);
  mutable absl::Mutex refusals_mu_;
  std::map<std::string, uint64_t> refusals_ ABSL_GUARDED_BY(refusals_mu_);
  const SuggestionBook* suggestions_ = nullptr;
};

}  // namespace vigil::controller
