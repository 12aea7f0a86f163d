// Remediation under kills: rounds of propose and approve of restart_service, whose service
// manager is a script that appends one line per run to a trace file and takes 1.5 s. Around each
// approval the controller is SIGKILLed (before it, while it is answered, during the run) or
// SIGSTOPped for longer than the run, as the seed draws. Afterwards every approved command ran at
// most once, its outcome (succeeded, or outcome-unknown) is on the timeline, a proposal that was
// approved never shows as proposed again, and `vigil audit verify` passes.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <future>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "tests/chaos/chaos_fixture.h"

namespace vigil::chaos {
namespace {

using testing::CommandResult;

constexpr char kRules[] = R"(rules:
  - alert: ChaosAlwaysOn
    expr: host_load1 >= 0
    severity: SEV4
)";

bool Terminal(v1::ProposalState s) {
  return s == v1::SUCCEEDED || s == v1::FAILED || s == v1::OUTCOME_UNKNOWN ||
         s == v1::REJECTED || s == v1::EXPIRED;
}

// Lines of the trace file per unit: how many times each restart really ran.
std::map<std::string, int> Runs(const std::string& trace) {
  std::map<std::string, int> runs;
  for (absl::string_view line :
       absl::StrSplit(testing::ReadFileOrEmpty(trace), '\n', absl::SkipEmpty())) {
    ++runs[std::string(line.substr(0, line.find(' ')))];
  }
  return runs;
}

TEST_F(ChaosTest, RemediationUnderKillsRunsEachApprovedCommandAtMostOnce) {
  const std::string alice = AddUser("alice", "commander");
  const std::string bob = AddUser("bob", "commander");
  // Many restarts of one unit on purpose: the circuit breaker (3 per host per hour) is lifted,
  // as a policy would for a planned rollout.
  ControllerOptions options = LoopbackController(kRules);
  testing::WriteFile(dir_.File("policy.yaml"),
                     "actions:\n  restart_service: {breaker: {per_host: 0, per_fleet: 0}}\n");
  options.policy = dir_.File("policy.yaml");
  ChaosController controller(options);
  ASSERT_TRUE(controller.Start(alice)) << controller.Output();

  const std::string trace = dir_.File("restarts.trace");
  const std::string script = dir_.File("restart.sh");
  testing::WriteFile(script, absl::StrCat("#!/bin/sh\necho \"$1 $(date +%s.%N) $$\" >> ", trace,
                                          "\nsleep 1.5\nexit 0\n"));
  chmod(script.c_str(), 0755);
  AgentSlot agent;
  agent.id = AgentId("svc-1");
  agent_ids_.push_back(agent.id);
  agent.argv = {testing::BinaryPath("vigil-agent"), "--controller=" + controller.options().listen,
                "--config=" +
                    WriteAgentConfig(agent.id,
                                     absl::StrCat("actions:\n  restart_service: {units: "
                                                  "[\"worker-*\"]}\nservice_manager: {restart: [",
                                                  script, ", \"{unit}\"]}\ncontroller_public_key: ",
                                                  dir_.File("data/controller-signing.pub"), "\n")),
                "--insecure"};
  StartAgentSlot(agent);

  std::string incident;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        v1::ListIncidentsResponse r;
        CommandResult c = controller.Cli(alice, {"incidents", "-o", "json"});
        if (c.exit_code != 0 ||
            !google::protobuf::util::JsonStringToMessage(c.stdout_text, &r).ok() ||
            r.incidents().empty()) {
          return false;
        }
        incident = r.incidents(0).id();
        return true;
      },
      absl::Seconds(30)))
      << controller.Output() << agent.process->Output();

  std::vector<std::string> violations;
  std::map<std::string, std::string> unit_of;  // proposal -> unit
  std::set<std::string> approved;              // approvals answered with exit 0
  auto actions = [&]() -> std::optional<std::map<std::string, v1::ActionProposal>> {
    v1::ListActionsResponse listed;
    CommandResult c = controller.Cli(alice, {"actions", "--incident", incident, "-o", "json"});
    if (c.exit_code != 0 ||
        !google::protobuf::util::JsonStringToMessage(c.stdout_text, &listed).ok()) {
      return std::nullopt;
    }
    std::map<std::string, v1::ActionProposal> out;
    for (const v1::ActionProposal& p : listed.actions()) {
      out[p.id()] = p;
    }
    return out;
  };
  // An approved proposal never goes back to proposed (nor vanishes).
  auto observe = [&] {
    auto now = actions();
    if (!now) {
      return;
    }
    for (const std::string& id : approved) {
      auto it = now->find(id);
      if (it == now->end()) {
        violations.push_back(absl::StrCat("approved proposal ", id, " is gone"));
      } else if (it->second.state() == v1::PROPOSED) {
        violations.push_back(absl::StrCat("approved proposal ", id,
                                          " shows as PROPOSED again after a controller fault"));
      }
    }
  };
  auto restart = [&](absl::Duration down) {
    controller.Kill();
    absl::SleepFor(down);
    return controller.Start(alice);
  };

  const int rounds = rng_.Int(3, 5) * ChaosScale();
  int kills = 0;
  for (int round = 1; round <= rounds; ++round) {
    const std::string unit = absl::StrCat("worker-", round);
    std::string id;
    ASSERT_TRUE(testing::WaitUntil(
        [&] {
          CommandResult c = controller.Cli(
              alice, {"action", "propose", incident, "--agent", agent.id, "--action",
                      "restart_service", "--param", "unit=" + unit, "-o", "json"});
          v1::ActionProposal p;
          if (c.exit_code != 0 ||
              !google::protobuf::util::JsonStringToMessage(c.stdout_text, &p).ok()) {
            return false;
          }
          id = p.id();
          return true;
        },
        absl::Seconds(20)))
        << controller.Output();
    unit_of[id] = unit;
    auto approve = [&] {
      return controller.Cli(bob, {"action", "approve", id}, absl::Seconds(5)).exit_code == 0;
    };
    // A fresh approval is given once the agent is back: refusing to dispatch to an absent agent
    // is honest, and how fast agents return is the fast-return scenario's to check.
    auto agent_connected = [&] {
      const bool back = testing::WaitUntil(
          [&] {
            auto listed = ListAgents(controller, alice);
            return listed && listed->count(agent.id) &&
                   listed->at(agent.id).state() == v1::CONNECTED;
          },
          absl::Seconds(30), absl::Milliseconds(100));
      EXPECT_TRUE(back) << "agent " << agent.id << " did not reconnect within 30 s";
    };
    agent_connected();
    const int fault = rng_.Int(0, 3);
    bool answered = false;
    switch (fault) {
      case 0:  // killed just before the approval
        printf("chaos fault: round %d: SIGKILL controller before the approval\n", round);
        ASSERT_TRUE(restart(rng_.Between(absl::Milliseconds(100), absl::Milliseconds(1000))));
        ++kills;
        agent_connected();
        answered = approve();
        break;
      case 1: {  // killed while the approval is being answered
        const absl::Duration after = rng_.Between(absl::Milliseconds(0), absl::Milliseconds(200));
        printf("chaos fault: round %d: SIGKILL controller %s into the approval\n", round,
               absl::FormatDuration(after).c_str());
        std::future<bool> approval = std::async(std::launch::async, approve);
        absl::SleepFor(after);
        controller.Kill();
        ++kills;
        answered = approval.get();
        absl::SleepFor(rng_.Between(absl::Milliseconds(100), absl::Milliseconds(1000)));
        ASSERT_TRUE(controller.Start(alice)) << controller.Output();
        break;
      }
      case 2: {  // killed while the command runs
        answered = approve();
        const absl::Duration after = rng_.Between(absl::Milliseconds(100), absl::Milliseconds(1200));
        printf("chaos fault: round %d: SIGKILL controller %s after the approval\n", round,
               absl::FormatDuration(after).c_str());
        absl::SleepFor(after);
        ASSERT_TRUE(restart(rng_.Between(absl::Milliseconds(100), absl::Milliseconds(2000))));
        ++kills;
        break;
      }
      case 3: {  // frozen for longer than the run
        answered = approve();
        const absl::Duration frozen = rng_.Between(absl::Milliseconds(2500), absl::Seconds(4));
        printf("chaos fault: round %d: SIGSTOP controller for %s during the run\n", round,
               absl::FormatDuration(frozen).c_str());
        absl::SleepFor(absl::Milliseconds(200));
        controller.Freeze();
        absl::SleepFor(frozen);
        controller.Thaw();
        break;
      }
    }
    if (answered) {
      approved.insert(id);
    }
    observe();
    // An approval that was not answered may or may not have been stored: only a proposal still
    // shown as PROPOSED may be approved again.
    if (!answered) {
      auto now = actions();
      if (now && now->count(id) && (*now)[id].state() == v1::PROPOSED) {
        agent_connected();
      }
      if (now && now->count(id) && (*now)[id].state() == v1::PROPOSED && approve()) {
        approved.insert(id);
      }
    }
  }

  // Calm: each approved proposal reaches an outcome.
  std::map<std::string, v1::ActionProposal> final_view;
  testing::WaitUntil(
      [&] {
        auto now = actions();
        if (!now) {
          return false;
        }
        final_view = *now;
        for (const std::string& id : approved) {
          if (!Terminal(final_view[id].state())) {
            return false;
          }
        }
        // And each proposal whose command ran, approved with an answer or not: its agent resends
        // the result after reconnecting, which may come after the answered ones are done.
        const std::map<std::string, int> ran_units = Runs(trace);
        for (const auto& [id, unit] : unit_of) {
          if (ran_units.count(unit) && !Terminal(final_view[id].state())) {
            return false;
          }
        }
        return true;
      },
      absl::Seconds(25), absl::Milliseconds(500));
  observe();
  v1::GetIncidentResponse shown;
  CommandResult show = controller.Cli(alice, {"incident", "show", incident, "-o", "json"});
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(show.stdout_text, &shown).ok())
      << show.output;

  const std::map<std::string, int> runs = Runs(trace);
  int ran = 0;
  int twice = 0;
  for (const auto& [id, unit] : unit_of) {
    const int n = runs.count(unit) ? runs.at(unit) : 0;
    ran += n > 0;
    const v1::ActionProposal& p = final_view[id];
    if (n > 1) {
      ++twice;
      violations.push_back(absl::StrCat("proposal ", id, " (", unit, ") ran ", n,
                                        " times: an approved command must run at most once"));
    }
    if (approved.count(id) == 0 && n == 0) {
      continue;
    }
    std::set<std::string> kinds;
    for (const v1::TimelineEvent& e : shown.timeline()) {
      if (absl::StartsWith(e.summary(), id + ":")) {
        kinds.insert(e.kind());
      }
    }
    const std::string state = v1::ProposalState_Name(p.state());
    if (n >= 1 && approved.count(id) == 0 && p.state() != v1::SUCCEEDED &&
        p.state() != v1::OUTCOME_UNKNOWN) {
      violations.push_back(absl::StrCat(
          "proposal ", id, " (", unit, ") ran and exited 0, but its state is ", state,
          p.reason().empty() ? "" : absl::StrCat(" (", p.reason(), ")"),
          ": want SUCCEEDED, or OUTCOME_UNKNOWN with what is known"));
    }
    if (n == 0 && p.state() == v1::SUCCEEDED) {
      violations.push_back(absl::StrCat("proposal ", id, " (", unit,
                                        ") is SUCCEEDED but its command never ran"));
    }
    std::string run_states;
    for (const v1::ActionRun& run : p.runs()) {
      absl::StrAppend(&run_states, " [", run.agent_id(), " ", run.state(), " exit ",
                      run.exit_code(), run.reason().empty() ? "" : ": ", run.reason(), "]");
    }
    printf("chaos: proposal %s (%s): %s%s, ran %d time(s), approval %s;%s\n", id.c_str(),
           unit.c_str(), state.c_str(),
           p.reason().empty() ? "" : absl::StrCat(" (", p.reason(), ")").c_str(), n,
           approved.count(id) ? "answered" : "not answered", run_states.c_str());
    // The trace script always exits 0: an approved command either succeeded, or the controller
    // lost track of it and says so. Failed, expired or rejected after approval is neither.
    if (approved.count(id) && Terminal(p.state()) && p.state() != v1::SUCCEEDED &&
        p.state() != v1::OUTCOME_UNKNOWN) {
      violations.push_back(absl::StrCat(
          "approved proposal ", id, " (", unit, ") ran ", n, " time(s) and ended ", state,
          p.reason().empty() ? "" : absl::StrCat(" (", p.reason(), ")"), run_states,
          ": want SUCCEEDED, or OUTCOME_UNKNOWN with what is known"));
    }
    if ((approved.count(id) || n >= 1) && !Terminal(p.state())) {
      violations.push_back(absl::StrCat(approved.count(id) ? "approved" : "run", " proposal ", id,
                                        " (", unit, ") is still ", state,
                                        " 25 s after the faults: no outcome on the timeline"));
    }
    if (p.state() == v1::SUCCEEDED && kinds.count("action_succeeded") == 0) {
      violations.push_back(
          absl::StrCat("proposal ", id, " is SUCCEEDED without an action_succeeded event"));
    }
    if (p.state() == v1::OUTCOME_UNKNOWN &&
        std::none_of(kinds.begin(), kinds.end(),
                     [](const std::string& k) { return absl::StrContains(k, "unknown"); })) {
      violations.push_back(absl::StrCat("proposal ", id,
                                        " is OUTCOME_UNKNOWN without an outcome-unknown event"));
    }
  }
  printf("chaos: %d rounds, %zu approvals answered, %d commands ran, %d twice\n", rounds,
         approved.size(), ran, twice);
  Report("kills", kills);
  Report("commands_approved", approved.size());
  Report("commands_run", ran);
  Report("commands_run_twice", twice);
  CommandResult verify = controller.Cli(alice, {"audit", "verify"});
  if (verify.exit_code != 0) {
    violations.push_back("`vigil audit verify` failed: " + verify.output);
  }
  Report("remediation.violations", violations.size());
  for (const std::string& v : violations) {
    ADD_FAILURE() << v;
  }
}

}  // namespace
}  // namespace vigil::chaos
