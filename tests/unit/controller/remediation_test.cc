// The approval policy file, and proposals with a simulated clock: expiry, reviews, waves and
// results, against a SQLite store in a temporary folder and a fake command sender.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <google/protobuf/util/json_util.h>

#include <algorithm>

#include "common/clock.h"
#include "controller/remediation/policy.h"
#include "controller/remediation/remediation_manager.h"
#include "storage/sqlite/sqlite_store.h"
#include "tests/support/fault_store.h"
#include "tests/support/hostile_yaml.h"
#include "tests/support/process.h"

namespace vigil::controller {
namespace {

using ::testing::HasSubstr;

TEST(Policy, DefaultsKeepTwoApproversForDangerousActions) {
  auto policy = LoadPolicy("");
  ASSERT_TRUE(policy.ok());
  EXPECT_EQ(policy->For("pg_terminate_backend").approvals, 2);
  EXPECT_EQ(policy->For("redis_flushdb").approvals, 2);
  EXPECT_EQ(policy->For("restart_service").approvals, 1);
  EXPECT_TRUE(policy->For("restart_service").roles.contains(Role::kCommander));
  EXPECT_FALSE(policy->For("restart_service").roles.contains(Role::kResponder));
}

TEST(Policy, FileOverridesAndErrorsNameFileAndLine) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("p.yaml"), R"(proposal_ttl: 5m
wave_size: 10
default: {approvals: 1, roles: [commander, admin]}
actions:
  restart_service: {approvals: 2, roles: [admin], timeout: 120s}
)");
  auto policy = LoadPolicy(dir.File("p.yaml"));
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->proposal_ttl, absl::Minutes(5));
  EXPECT_EQ(policy->wave_size, 10);
  EXPECT_EQ(policy->For("restart_service").approvals, 2);
  EXPECT_EQ(policy->For("restart_service").roles, std::set<Role>{Role::kAdmin});
  EXPECT_EQ(policy->For("restart_service").timeout, absl::Seconds(120));

  for (const auto& [text, want] : std::vector<std::pair<std::string, std::string>>{
           {"actions:\n  drop_table: {}\n", "p.yaml:2: unknown action 'drop_table'"},
           {"actions:\n  logrotate: {approvals: 0}\n", "approvals must be 1 to 10"},
           {"actions:\n  logrotate: {roles: [viewer]}\n", "viewers cannot approve"},
           {"actions:\n  logrotate: {roles: [boss]}\n", "role 'boss'"},
           {"wave_size: 0\n", "wave_size must be 1 to 100000"},
           {"wave_size: 1e300\n", "p.yaml:1: wave_size must be 1 to 100000"},
           {"colour: red\n", "unknown key 'colour'"},
       }) {
    testing::WriteFile(dir.File("p.yaml"), text);
    auto bad = LoadPolicy(dir.File("p.yaml"));
    ASSERT_FALSE(bad.ok()) << text;
    EXPECT_THAT(std::string(bad.status().message()), HasSubstr(want)) << text;
  }
}

// Hostile policy files are InvalidArgument errors naming the file and line; none throws.
TEST(Policy, HostileFilesGiveFileLineErrors) {
  for (const char* key : {"actions", "default"}) {
    for (const testing::HostileYaml& c : testing::HostileYamlCases(key)) {
      SCOPED_TRACE(std::string(key) + ": " + c.name);
      auto policy = ParsePolicy(c.text, "p.yaml");
      ASSERT_FALSE(policy.ok());
      EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument) << policy.status();
      EXPECT_TRUE(
          testing::OpensWithFileLine(std::string(policy.status().message()), "p.yaml", c.has_line))
          << policy.status();
    }
  }
  auto nested = ParsePolicy("actions:\n  logrotate:\n    ? [a]\n    : 1\n", "p.yaml");
  ASSERT_FALSE(nested.ok());
  EXPECT_THAT(std::string(nested.status().message()),
              HasSubstr("p.yaml:3: a key in actions.logrotate must be a plain name"));
  testing::TempDir dir;
  auto directory = LoadPolicy(dir.path());
  ASSERT_FALSE(directory.ok());
  EXPECT_THAT(std::string(directory.status().message()), HasSubstr("is a directory"));
}

TEST(Policy, ParsesTextWithTheGivenNameInErrors) {
  auto policy = ParsePolicy("wave_size: 5\nactions:\n  logrotate: {approvals: 3}\n", "inline.yaml");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->wave_size, 5);
  EXPECT_EQ(policy->For("logrotate").approvals, 3);
  auto bad = ParsePolicy("proposal_ttl: 5m\nwave_size: 0\n", "inline.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("inline.yaml:2: wave_size"));
  // Found by fuzzing: out of int's range, or NaN, was converted to int (undefined behaviour).
  for (const char* text : {"wave_size: 1e300\n", "wave_size: -1e300\n", "wave_size: 1000001\n"}) {
    auto huge = ParsePolicy(text, "inline.yaml");
    ASSERT_FALSE(huge.ok()) << text;
    EXPECT_THAT(std::string(huge.status().message()), HasSubstr("wave_size must be 1 to 100000"));
  }
}

class RemediationManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::OpenSqliteStore(dir_.File("vigil.db"));
    ASSERT_TRUE(store.ok());
    store_ = std::move(*store);
    faults_ = std::make_unique<testing::FaultInjectingStore>(store_.get());
    ASSERT_NO_FATAL_FAILURE(StartManagers());
    // An incident to act on.
    v1::Alert alert;
    alert.set_id("a1");
    alert.set_rule("HighCPU");
    alert.set_agent_id("w-1");
    alert.set_state(v1::FIRING);
    alert.set_source("rules");
    alert.set_fired_unix_ms(1);
    incidents_->OnAlertChange(alert, nullptr);
    incidents_->Flush();
  }
  void TearDown() override { writer_->Stop(); }

  absl::StatusOr<v1::ActionProposal> Propose(std::vector<std::string> agents,
                                             const std::string& action, int wave_size = 0) {
    v1::ProposeActionRequest request;
    request.set_incident_id("INC-0001");
    request.set_action(action);
    static const std::map<std::string, std::pair<std::string, std::string>> kParams = {
        {"restart_service", {"unit", "worker"}},
        {"pg_terminate_backend", {"pid", "42"}},
        {"redis_flushdb", {"db", "0"}}};
    const auto& [key, value] = kParams.at(action);
    (*request.mutable_params())[key] = value;
    for (const auto& a : agents) {
      request.add_agents(a);
    }
    request.set_wave_size(wave_size);
    absl::StatusOr<v1::ActionProposal> result = absl::UnknownError("not called");
    remediation_->Propose(request, Caller{"alice", Role::kCommander},
                          [&](absl::StatusOr<v1::ActionProposal> r) { result = r; });
    incidents_->Flush();
    return result;
  }
  absl::StatusOr<v1::ActionProposal> Review(const std::string& id, const std::string& who,
                                            Role role = Role::kCommander, bool approve = true) {
    v1::ReviewActionRequest request;
    request.set_proposal_id(id);
    request.set_approve(approve);
    absl::StatusOr<v1::ActionProposal> result = absl::UnknownError("not called");
    remediation_->Review(request, Caller{who, role},
                         [&](absl::StatusOr<v1::ActionProposal> r) { result = r; });
    incidents_->Flush();
    return result;
  }
  void Answer(const v1::Command& command, v1::CommandResult::Phase phase, int exit_code = 0) {
    v1::CommandResult result;
    result.set_command_id(command.id());
    result.set_phase(phase);
    result.set_exit_code(exit_code);
    remediation_->OnCommandResult(command.agent_id(), result, [this] { ++acknowledged_; });
    incidents_->Flush();
  }
  v1::ActionProposal Stored(const std::string& id) { return **store_->GetProposal(id); }

  // The writer, incidents and remediation of a controller on the store. Agents offer
  // restart_service and pg_terminate_backend; "offline" is not connected, "nobody" is unknown.
  void StartManagers() {
    writer_ = std::make_unique<TimelineWriter>(faults_.get(), &clock_);
    incidents_ = std::make_unique<IncidentManager>(
        writer_.get(), &clock_,
        [](const std::string&, const v1::CollectDiagnostics&) { return true; },
        IncidentManager::Options{});
    ASSERT_TRUE(incidents_->Start().ok());
    auto signer = CommandSigner::LoadOrCreate(dir_.File("k.key"), dir_.File("k.pub"));
    ASSERT_TRUE(signer.ok());
    remediation_ = std::make_unique<RemediationManager>(
        writer_.get(), incidents_.get(), &clock_, Policy(), std::move(*signer),
        [this](const std::string& agent, v1::Command command) {
          if (agent == "offline") {
            return false;
          }
          sent_.push_back(command);
          return true;
        },
        [](const std::string& agent) -> std::optional<std::vector<std::string>> {
          if (agent == "nobody") {
            return std::nullopt;
          }
          return std::vector<std::string>{"restart_service", "pg_terminate_backend"};
        });
    ASSERT_TRUE(remediation_->Start().ok());
    writer_->Start();
  }

  // The controller dies and a new one starts on the same database.
  void RestartController() {
    writer_->Stop();
    remediation_.reset();
    incidents_.reset();
    ASSERT_NO_FATAL_FAILURE(StartManagers());
  }

  testing::TempDir dir_;
  SimulatedClock clock_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<testing::FaultInjectingStore> faults_;
  std::unique_ptr<TimelineWriter> writer_;
  std::unique_ptr<IncidentManager> incidents_;
  std::unique_ptr<RemediationManager> remediation_;
  std::vector<v1::Command> sent_;
  int acknowledged_ = 0;
};

TEST_F(RemediationManagerTest, ProposalsAreCheckedWhenMade) {
  EXPECT_THAT(std::string(Propose({"nobody"}, "restart_service").status().message()),
              HasSubstr("no agent 'nobody'"));
  EXPECT_THAT(std::string(Propose({"w-1"}, "redis_flushdb").status().message()),
              HasSubstr("w-1 does not offer redis_flushdb"));
  EXPECT_THAT(std::string(Propose({"w-1", "w-1"}, "restart_service").status().message()),
              HasSubstr("named twice"));
  EXPECT_THAT(std::string(Propose({}, "restart_service").status().message()),
              HasSubstr("at least one agent"));
}

TEST_F(RemediationManagerTest, UnapprovedProposalExpires) {
  auto p = Propose({"w-1"}, "pg_terminate_backend");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(Review(p->id(), "bob").ok());
  clock_.Advance(absl::Minutes(15));
  remediation_->Tick();
  incidents_->Flush();
  EXPECT_EQ(Stored(p->id()).state(), v1::EXPIRED);
  EXPECT_THAT(std::string(Review(p->id(), "carol").status().message()), HasSubstr("expired"));
  EXPECT_TRUE(sent_.empty());
}

TEST_F(RemediationManagerTest, RolesProposerAndDuplicatesAreRefused) {
  auto p = Propose({"w-1"}, "pg_terminate_backend");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(absl::IsPermissionDenied(Review(p->id(), "alice").status()));
  EXPECT_TRUE(absl::IsPermissionDenied(Review(p->id(), "rita", Role::kResponder).status()));
  ASSERT_TRUE(Review(p->id(), "bob").ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(Review(p->id(), "bob").status()));
  EXPECT_TRUE(sent_.empty());
  auto approved = Review(p->id(), "carol");
  ASSERT_TRUE(approved.ok());
  EXPECT_EQ(approved->state(), v1::DISPATCHING);
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].signature().size(), 64u);
  EXPECT_EQ(sent_[0].params().at("pid"), "42");
}

TEST_F(RemediationManagerTest, WavesAdvanceOnSuccessAndStopAtFailure) {
  auto p = Propose({"w-1", "w-2", "w-3", "w-4"}, "restart_service", 2);
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(Review(p->id(), "bob").ok());
  ASSERT_EQ(sent_.size(), 2u);  // the first wave only
  Answer(sent_[0], v1::CommandResult::STARTED);
  Answer(sent_[0], v1::CommandResult::FINISHED);
  EXPECT_EQ(sent_.size(), 2u);  // w-2 still running
  Answer(sent_[1], v1::CommandResult::FINISHED);
  ASSERT_EQ(sent_.size(), 4u);  // second wave
  Answer(sent_[2], v1::CommandResult::FINISHED, 1);
  Answer(sent_[3], v1::CommandResult::FINISHED);
  v1::ActionProposal done = Stored(p->id());
  EXPECT_EQ(done.state(), v1::FAILED);
  EXPECT_THAT(done.reason(), HasSubstr("stopped at wave 2: failed on w-3"));

  auto q = Propose({"w-1", "w-2", "w-3"}, "restart_service", 1);
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(Review(q->id(), "bob").ok());
  Answer(sent_[4], v1::CommandResult::REFUSED);
  v1::ActionProposal stopped = Stored(q->id());
  EXPECT_EQ(stopped.state(), v1::FAILED);
  EXPECT_EQ(stopped.runs(1).state(), "skipped");
  EXPECT_EQ(sent_.size(), 5u);  // nothing sent to the skipped ones
}

TEST_F(RemediationManagerTest, OfflineAgentAndSilentAgentFailTheRollout) {
  auto p = Propose({"offline"}, "restart_service");
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(Review(p->id(), "bob").ok());
  // The command is stored first, then sent; that the agent is away is known just after.
  incidents_->Flush();
  EXPECT_EQ(Stored(p->id()).state(), v1::FAILED);
  EXPECT_THAT(Stored(p->id()).runs(0).reason(), HasSubstr("not connected"));

  auto q = Propose({"w-1"}, "restart_service");
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(Review(q->id(), "bob").ok());
  // A silent agent is "no result yet" past the deadline (timeout 60s + command lifetime 60s),
  // never a failure; only past the patience (1h) is its outcome unknown.
  clock_.Advance(absl::Minutes(3));
  remediation_->Tick();
  incidents_->Flush();
  EXPECT_EQ(Stored(q->id()).state(), v1::DISPATCHING);
  EXPECT_EQ(Stored(q->id()).runs(0).reason(), "no result yet");
  clock_.Advance(absl::Hours(1));
  remediation_->Tick();
  incidents_->Flush();
  EXPECT_EQ(Stored(q->id()).state(), v1::OUTCOME_UNKNOWN);
  EXPECT_THAT(Stored(q->id()).runs(0).reason(), HasSubstr("whether it ran is unknown"));
  // A late result still lands, and settles the outcome.
  Answer(sent_.back(), v1::CommandResult::FINISHED, 0);
  EXPECT_EQ(Stored(q->id()).state(), v1::SUCCEEDED);
  EXPECT_EQ(Stored(q->id()).runs(0).state(), "finished");
  EXPECT_TRUE(store_->VerifyChain()->ok());
}

TEST_F(RemediationManagerTest, NewPolicyAppliesToNewProposalsOnly) {
  auto before = Propose({"w-1"}, "restart_service");
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->approvals_required(), 1);
  testing::WriteFile(dir_.File("p.yaml"),
                     "actions:\n  restart_service: {approvals: 2, roles: [admin]}\n");
  auto policy = LoadPolicy(dir_.File("p.yaml"));
  ASSERT_TRUE(policy.ok()) << policy.status();
  remediation_->SetPolicy(*policy);

  auto after = Propose({"w-1"}, "restart_service");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->approvals_required(), 2);
  // Who may review follows the new policy, for old and new proposals alike.
  EXPECT_THAT(std::string(Review(before->id(), "bob", Role::kCommander).status().message()),
              HasSubstr("needs admin"));
  auto approved = Review(before->id(), "bob", Role::kAdmin);
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->state(), v1::DISPATCHING);  // its one approval, as when it was made
  EXPECT_EQ(sent_.size(), 1u);
}

}  // namespace
}  // namespace vigil::controller

namespace vigil::controller {
namespace {

TEST_F(RemediationManagerTest, NothingIsSentUnlessTheApprovalAndItsCommandsAreStored) {
  auto p = Propose({"w-1"}, "restart_service");
  ASSERT_TRUE(p.ok());
  faults_->FailWrites();
  auto approved = Review(p->id(), "bob");
  EXPECT_EQ(approved.status().code(), absl::StatusCode::kResourceExhausted);
  incidents_->Flush();
  EXPECT_THAT(sent_, ::testing::IsEmpty());
  EXPECT_EQ(Stored(p->id()).state(), v1::PROPOSED);
  faults_->Heal();
  // Nothing changed in memory either: bob may approve now, and it runs once.
  approved = Review(p->id(), "bob");
  ASSERT_TRUE(approved.ok()) << approved.status();
  incidents_->Flush();
  ASSERT_EQ(sent_.size(), 1u);
  v1::ActionProposal stored = Stored(p->id());
  EXPECT_EQ(stored.state(), v1::DISPATCHING);
  EXPECT_EQ(stored.runs(0).command_id(), sent_[0].id());
  v1::Command kept;
  ASSERT_TRUE(kept.ParseFromString(stored.runs(0).signed_command()));
  EXPECT_EQ(kept.id(), sent_[0].id());
  EXPECT_EQ(kept.signature(), sent_[0].signature());
}

TEST_F(RemediationManagerTest, AResultIsAcknowledgedOnlyOnceStored) {
  auto p = Propose({"w-1"}, "restart_service");
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(Review(p->id(), "bob").ok());
  ASSERT_EQ(sent_.size(), 1u);
  faults_->FailWrites();
  Answer(sent_[0], v1::CommandResult::FINISHED, 0);
  EXPECT_EQ(acknowledged_, 0);  // the agent keeps it and sends it again
  EXPECT_EQ(Stored(p->id()).state(), v1::DISPATCHING);
  faults_->Heal();
  Answer(sent_[0], v1::CommandResult::FINISHED, 0);
  EXPECT_EQ(acknowledged_, 1);
  EXPECT_EQ(Stored(p->id()).state(), v1::SUCCEEDED);
  // A resend of a result already stored is acknowledged and changes nothing.
  Answer(sent_[0], v1::CommandResult::FINISHED, 0);
  EXPECT_EQ(acknowledged_, 2);
  auto events = *store_->ListEvents("INC-0001", 0, 100);
  EXPECT_EQ(std::count_if(events.begin(), events.end(),
                          [](const auto& e) { return e.kind() == "action_finished"; }),
            1);
}

TEST_F(RemediationManagerTest, ARestartResumesTheRolloutWithTheSameCommandIds) {
  auto p = Propose({"w-1", "w-2"}, "restart_service", 1);
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(Review(p->id(), "bob").ok());
  ASSERT_EQ(sent_.size(), 1u);
  const v1::Command first = sent_[0];

  // The controller dies: a new one starts on the same database.
  sent_.clear();
  ASSERT_NO_FATAL_FAILURE(RestartController());
  EXPECT_EQ(Stored(p->id()).state(), v1::DISPATCHING);  // never back to proposed

  // The agent comes back: the very same signed command goes out again.
  remediation_->OnAgentConnected("w-1");
  incidents_->Flush();
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].id(), first.id());
  EXPECT_EQ(sent_[0].signature(), first.signature());
  // It had run it: DUPLICATE, then its journaled result; the rollout goes on to wave 2.
  Answer(first, v1::CommandResult::DUPLICATE);
  EXPECT_EQ(Stored(p->id()).state(), v1::DISPATCHING);
  Answer(first, v1::CommandResult::FINISHED, 0);
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sent_[1].agent_id(), "w-2");
  Answer(sent_[1], v1::CommandResult::FINISHED, 0);
  EXPECT_EQ(Stored(p->id()).state(), v1::SUCCEEDED);
  auto events = *store_->ListEvents("INC-0001", 0, 100);
  std::vector<std::string> kinds;
  for (const auto& e : events) {
    kinds.push_back(e.kind());
  }
  EXPECT_THAT(kinds, ::testing::Contains("action_resumed"));
  EXPECT_TRUE(store_->VerifyChain()->ok());
}


TEST_F(RemediationManagerTest, CircuitBreakerRefusesTheFourthRestartAndSurvivesARestart) {
  for (int i = 0; i < 3; ++i) {
    auto p = Propose({"w-1"}, "restart_service");
    ASSERT_TRUE(p.ok()) << i << ": " << p.status();
    ASSERT_TRUE(Review(p->id(), "bob").ok());
    Answer(sent_.back(), v1::CommandResult::FINISHED, 0);
    clock_.Advance(absl::Minutes(1));
  }
  auto fourth = Propose({"w-1"}, "restart_service");
  ASSERT_TRUE(absl::IsResourceExhausted(fourth.status())) << fourth.status();
  EXPECT_THAT(std::string(fourth.status().message()),
              HasSubstr("restart_service ran 3 time(s) on w-1 in the last 1h (at most 3 per host, "
                        "then a cool-down of 15m)"));
  EXPECT_THAT(std::string(fourth.status().message()), HasSubstr("(in 57m)"));
  EXPECT_EQ(remediation_->BreakerRefusals(),
            (std::map<std::string, uint64_t>{{"restart_service", 1}}));
  // Another host is fine.
  EXPECT_TRUE(Propose({"w-2"}, "restart_service").ok());

  // The ledger is rebuilt from the store: a restarted controller refuses the same.
  ASSERT_NO_FATAL_FAILURE(RestartController());
  EXPECT_TRUE(absl::IsResourceExhausted(Propose({"w-1"}, "restart_service").status()));

  // An admin re-arms it for w-1, with a reason, on the timeline.
  v1::RearmBreakerRequest rearm;
  rearm.set_incident_id("INC-0001");
  rearm.set_action("restart_service");
  rearm.add_agents("w-1");
  absl::StatusOr<v1::RearmBreakerResponse> refused = absl::UnknownError("not called");
  remediation_->Rearm(rearm, Caller{"root", Role::kAdmin},
                      [&](absl::StatusOr<v1::RearmBreakerResponse> r) { refused = r; });
  incidents_->Flush();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("needs a reason"));
  rearm.set_reason("worker leak fixed in 2.4.1, restarts are expected");
  absl::StatusOr<v1::RearmBreakerResponse> done = absl::UnknownError("not called");
  remediation_->Rearm(rearm, Caller{"root", Role::kAdmin},
                      [&](absl::StatusOr<v1::RearmBreakerResponse> r) { done = r; });
  incidents_->Flush();
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_THAT(done->summary(), HasSubstr("re-armed on w-1 by root: worker leak fixed"));
  auto after = Propose({"w-1"}, "restart_service");
  EXPECT_TRUE(after.ok()) << after.status();
  auto events = *store_->ListIncidentEventsOfKind("INC-0001", "breaker_rearmed", 10);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].actor(), "root");
  EXPECT_TRUE(store_->VerifyChain()->ok());
}

TEST_F(RemediationManagerTest, TheLastApprovalIsCheckedAgainstRunsSinceTheProposal) {
  // Four proposals of a 3-per-host action, each fine when made (nothing had run yet).
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    auto p = Propose({"w-1"}, "restart_service");
    ASSERT_TRUE(p.ok()) << i << ": " << p.status();
    ids.push_back(p->id());
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Review(ids[i], "bob").ok()) << i;
  }
  ASSERT_EQ(sent_.size(), 3u);
  // The fourth approval would make the fourth run in the hour: refused, and nothing changes.
  auto fourth = Review(ids[3], "bob");
  ASSERT_TRUE(absl::IsResourceExhausted(fourth.status())) << fourth.status();
  EXPECT_THAT(std::string(fourth.status().message()),
              HasSubstr(absl::StrCat("approval of ", ids[3], " refused; circuit breaker")));
  EXPECT_EQ(sent_.size(), 3u);
  const v1::ActionProposal stored = Stored(ids[3]);
  EXPECT_EQ(stored.state(), v1::PROPOSED);
  EXPECT_EQ(stored.approved_by_size(), 0);
  EXPECT_EQ(remediation_->BreakerRefusals().at("restart_service"), 1u);
}

TEST_F(RemediationManagerTest, ASuggestionIsProposedAsFilledAndOnlyAsRead) {
  RuleFile file = ParseRules(R"(rules:
  - alert: HighCPU
    expr: host_cpu_usage_ratio > 0.9
    diagnostics: [top_processes]
    suggest:
      - {action: restart_service, params: {unit: "{top_processes_cpu.unit}"}}
)",
                             "r.yaml");
  ASSERT_TRUE(file.errors.empty()) << file.errors[0];
  SuggestionBook book;
  book.Set(file.rules);
  remediation_->UseSuggestions(&book);
  auto propose = [&](int n, const std::string& fingerprint) {
    v1::ProposeActionRequest request;
    request.set_incident_id("INC-0001");
    request.set_suggestion(n);
    request.set_suggestion_fingerprint(fingerprint);
    absl::StatusOr<v1::ActionProposal> result = absl::UnknownError("not called");
    remediation_->Propose(request, Caller{"alice", Role::kCommander},
                          [&](absl::StatusOr<v1::ActionProposal> r) { result = r; });
    incidents_->Flush();
    return result;
  };
  // Nothing collected yet: it cannot be proposed, and says why.
  auto early = propose(1, "");
  EXPECT_THAT(std::string(early.status().message()),
              HasSubstr("cannot be proposed yet: no top_processes_cpu table from w-1 yet"));
  EXPECT_THAT(std::string(propose(2, "").status().message()), HasSubstr("no suggestion 2"));

  auto diagnostics = [&](const std::string& unit) {
    v1::Diagnostics d;
    v1::DiagnosticTable* t = d.add_tables();
    t->set_name("top_processes_cpu");
    t->add_columns("pid");
    t->add_columns("unit");
    v1::DiagnosticRow* row = t->add_rows();
    row->add_cells("77");
    row->add_cells(unit);
    std::string json;
    (void)google::protobuf::util::MessageToJsonString(d, &json);
    writer_->Submit([&, json](Transaction& txn) {
      return incidents_->Record(txn, "INC-0001", "diagnostics", "w-1", "diagnostics from w-1",
                                json);
    });
    incidents_->Flush();
  };
  diagnostics("worker@1.service");
  auto suggestions = LoadSuggestions(*store_, "INC-0001", *book.Get(), nullptr);
  ASSERT_TRUE(suggestions.ok());
  ASSERT_EQ(suggestions->size(), 1u);
  const std::string read = (*suggestions)[0].fingerprint();
  // The diagnostics change between reading and proposing: refused, naming what it is now.
  diagnostics("worker@2.service");
  auto stale = propose(1, read);
  EXPECT_TRUE(absl::IsFailedPrecondition(stale.status()));
  EXPECT_THAT(std::string(stale.status().message()),
              HasSubstr("changed since it was read (it is now restart_service unit=worker@2.service"));
  auto now = LoadSuggestions(*store_, "INC-0001", *book.Get(), nullptr);
  auto p = propose(1, (*now)[0].fingerprint());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->action(), "restart_service");
  EXPECT_EQ(p->params().at("unit"), "worker@2.service");
  EXPECT_EQ(p->suggested_by_rule(), "HighCPU");
  EXPECT_THAT(p->suggestion_evidence(), HasSubstr("top_processes_cpu row 1"));
  auto proposed = *store_->ListIncidentEventsOfKind("INC-0001", "action_proposed", 1);
  ASSERT_EQ(proposed.size(), 1u);
  EXPECT_THAT(proposed[0].summary(), HasSubstr("suggested by rule HighCPU: unit = worker@2.service"));
  // The approval flow is unchanged: one approval by someone else sends it.
  ASSERT_TRUE(Review(p->id(), "bob").ok());
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].params().at("unit"), "worker@2.service");

  // Agents, action or params beside a suggestion are refused.
  v1::ProposeActionRequest mixed;
  mixed.set_incident_id("INC-0001");
  mixed.set_suggestion(1);
  mixed.add_agents("w-2");
  absl::StatusOr<v1::ActionProposal> result = absl::UnknownError("not called");
  remediation_->Propose(mixed, Caller{"alice", Role::kCommander},
                        [&](absl::StatusOr<v1::ActionProposal> r) { result = r; });
  incidents_->Flush();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("give none of them"));
}

}  // namespace
}  // namespace vigil::controller
