// Approved remediation end to end on loopback: a pg_sleep holding a lock becomes a SlowQueries
// incident whose diagnostics name the backend's pid; a commander proposes pg_terminate_backend;
// the proposer, a viewer and a caller without a token cannot approve; two other commanders do;
// the signed command runs on the database's agent, the backend is gone, and the timeline holds
// every step and still verifies.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "tests/support/proto_json.h"
#include "tests/support/servers.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::ParseJson;
using testing::RunCommand;
using testing::Subprocess;
using testing::WaitUntil;

class RemediationTest : public ::testing::Test {
 protected:
  RemediationTest() : address_(absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort())) {
    testing::WriteFile(dir_.File("rules.yaml"), R"(rules:
  - alert: SlowQueries
    expr: pg_longest_query_seconds > 1
    severity: SEV2
    diagnostics: [pg_active_queries, pg_lock_waits]
)");
  }

  std::string AddUser(const std::string& name, const std::string& role) {
    CommandResult r = RunCommand({BinaryPath("vigil-controller"), "users", "add", name, "--role",
                                  role, "--db", dir_.File("vigil.db")});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return std::string(absl::StripAsciiWhitespace(r.stdout_text));
  }

  void StartController(std::vector<std::string> extra_args = {}) {
    std::vector<std::string> args = {BinaryPath("vigil-controller"), "--listen=" + address_,
                                     "--db=" + dir_.File("vigil.db"), "--insecure",
                                     "--http-listen=off", "--rules=" + dir_.File("rules.yaml")};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    controller_ = std::make_unique<Subprocess>(args, std::map<std::string, std::string>{},
                                               dir_.File("controller.log"));
    ASSERT_TRUE(
        WaitUntil([&] { return Cli(admin_, {"agents"}).exit_code == 0; }, absl::Seconds(10)))
        << controller_->Output();
  }

  // The database's agent, trusting the key the controller made on its first start.
  std::unique_ptr<Subprocess> StartDatabaseAgent(const testing::PostgresServer& postgres) {
    testing::WriteFile(dir_.File("db-1.yaml"),
                       absl::StrCat("id: db-1\nlabels: {role: postgres, service: postgres}\n"
                                    "collectors:\n  postgres: {dsn: '",
                                    postgres.Dsn("vigil"),
                                    "'}\n"
                                    "actions:\n  pg_terminate_backend: {}\n"
                                    "controller_public_key: ",
                                    dir_.File("controller-signing.pub"),
                                    "\njournal: ", dir_.File("db-1.journal"), "\n"));
    return std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-agent"), "--controller=" + address_,
                                 "--config=" + dir_.File("db-1.yaml"), "--insecure"},
        std::map<std::string, std::string>{}, dir_.File("agent.log"));
  }

  CommandResult Cli(const std::string& token, std::vector<std::string> args) {
    args.insert(args.begin(), {BinaryPath("vigil"), "--controller=" + address_});
    std::map<std::string, std::string> env = {{"VIGIL_INSECURE", "1"}};
    if (!token.empty()) {
      env["VIGIL_TOKEN"] = token;
    }
    return RunCommand(args, absl::Seconds(30), env);
  }

  testing::TempDir dir_;
  const std::string address_;
  std::unique_ptr<Subprocess> controller_;
  std::string admin_;
};

TEST_F(RemediationTest, TwoPersonApprovalTerminatesTheBlockingBackend) {
  testing::PostgresServer postgres(dir_.path());
  ASSERT_TRUE(postgres.ok());
  admin_ = AddUser("root", "admin");
  const std::string alice = AddUser("alice", "commander");
  const std::string bob = AddUser("bob", "commander");
  const std::string carol = AddUser("carol", "commander");
  const std::string victor = AddUser("victor", "viewer");
  const std::string rita = AddUser("rita", "responder");
  CommandResult taken = RunCommand({BinaryPath("vigil-controller"), "users", "add", "alice",
                                    "--role", "viewer", "--db", dir_.File("vigil.db")});
  EXPECT_EQ(taken.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(taken.output, "alice")) << taken.output;
  StartController();

  std::unique_ptr<Subprocess> agent = StartDatabaseAgent(postgres);

  auto holder = postgres.Background(
      "BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 1; SELECT pg_sleep(60); COMMIT;",
      "app");
  int pid = 0;
  ASSERT_TRUE(WaitUntil(
      [&] {
        CommandResult r = postgres.Psql(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' "
            "AND pid <> pg_backend_pid()");
        return absl::SimpleAtoi(absl::StripAsciiWhitespace(r.stdout_text), &pid) && pid > 0;
      },
      absl::Seconds(10)));

  // The incident, with the pid in its diagnostics.
  std::string incident;
  ASSERT_TRUE(WaitUntil(
      [&] {
        v1::ListIncidentsResponse r;
        CommandResult c = Cli(victor, {"incidents", "-o", "json"});
        if (c.exit_code != 0 || !ParseJson(c.stdout_text, &r) || r.incidents().empty()) {
          return false;
        }
        incident = r.incidents(0).id();
        v1::GetIncidentResponse shown;
        if (!ParseJson(Cli(victor, {"incident", "show", incident, "-o", "json"}).stdout_text,
                       &shown)) {
          return false;
        }
        for (const auto& e : shown.timeline()) {
          if (e.kind() == "diagnostics" && absl::StrContains(e.details_json(), "pg_sleep(60)") &&
              absl::StrContains(e.details_json(), absl::StrCat("\"", pid, "\""))) {
            return true;
          }
        }
        return false;
      },
      absl::Seconds(20)))
      << controller_->Output();

  // Proposals are checked when they are made.
  CommandResult unknown =
      Cli(alice, {"action", "propose", incident, "--agent", "db-1", "--action", "drop_database"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(unknown.output, "unknown action 'drop_database'"))
      << unknown.output;
  CommandResult missing = Cli(alice, {"action", "propose", incident, "--agent", "db-1", "--action",
                                      "pg_terminate_backend"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(missing.output, "pid")) << missing.output;
  CommandResult ill_typed = Cli(alice, {"action", "propose", incident, "--agent", "db-1",
                                        "--action", "pg_terminate_backend", "--param", "pid=abc"});
  EXPECT_EQ(ill_typed.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(ill_typed.output, "pid")) << ill_typed.output;
  CommandResult lacking = Cli(alice, {"action", "propose", incident, "--agent", "db-1", "--action",
                                      "restart_service", "--param", "unit=azalscore"});
  EXPECT_EQ(lacking.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(lacking.output, "db-1 does not offer restart_service"))
      << lacking.output;
  CommandResult by_responder =
      Cli(rita, {"action", "propose", incident, "--agent", "db-1", "--action",
                 "pg_terminate_backend", "--param", absl::StrCat("pid=", pid)});
  EXPECT_EQ(by_responder.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(by_responder.output, "commander")) << by_responder.output;

  CommandResult proposed = Cli(alice, {"action", "propose", incident, "--agent", "db-1", "--action",
                                       "pg_terminate_backend", "--param", absl::StrCat("pid=", pid),
                                       "--reason", "holds the accounts lock", "-o", "json"});
  ASSERT_EQ(proposed.exit_code, 0) << proposed.output;
  v1::ActionProposal proposal;
  ASSERT_TRUE(ParseJson(proposed.stdout_text, &proposal)) << proposed.stdout_text;
  EXPECT_EQ(proposal.approvals_required(), 2);
  const std::string id = proposal.id();

  // Who may not approve.
  CommandResult own = Cli(alice, {"action", "approve", id});
  EXPECT_EQ(own.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(own.output, "alice proposed")) << own.output;
  CommandResult viewer = Cli(victor, {"action", "approve", id});
  EXPECT_EQ(viewer.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(viewer.output, "viewer")) << viewer.output;
  CommandResult anonymous = Cli("", {"action", "approve", id});
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(anonymous.output, "token")) << anonymous.output;
  CommandResult forged = Cli("vgt_0000", {"action", "approve", id});
  EXPECT_EQ(forged.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(forged.output, "unknown token")) << forged.output;

  // Two other commanders: the first is not enough, the second dispatches.
  ASSERT_EQ(Cli(bob, {"action", "approve", id, "--comment", "checked the pid"}).exit_code, 0);
  CommandResult twice = Cli(bob, {"action", "approve", id});
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(twice.output, "already approved")) << twice.output;
  EXPECT_EQ(postgres.Psql(absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE pid = ", pid))
                .stdout_text,
            "1\n");
  ASSERT_EQ(Cli(carol, {"action", "approve", id}).exit_code, 0);

  ASSERT_TRUE(WaitUntil(
      [&] {
        return postgres
                   .Psql(absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE pid = ", pid))
                   .stdout_text == "0\n";
      },
      absl::Seconds(10)))
      << agent->Output();

  // Every step on the timeline, in order.
  std::vector<std::string> kinds;
  ASSERT_TRUE(WaitUntil(
      [&] {
        v1::GetIncidentResponse shown;
        ParseJson(Cli(victor, {"incident", "show", incident, "-o", "json"}).stdout_text, &shown);
        kinds.clear();
        for (const auto& e : shown.timeline()) {
          if (absl::StartsWith(e.kind(), "action_")) {
            kinds.push_back(e.kind());
          }
        }
        return !kinds.empty() && kinds.back() == "action_succeeded";
      },
      absl::Seconds(10)));
  EXPECT_EQ(kinds, (std::vector<std::string>{
                       "action_proposed", "action_approved", "action_approved", "action_dispatched",
                       "action_started", "action_finished", "action_succeeded"}));
  v1::ListActionsResponse listed;
  ASSERT_TRUE(ParseJson(Cli(victor, {"actions", "--incident", incident, "-o", "json"}).stdout_text,
                        &listed));
  ASSERT_EQ(listed.actions_size(), 1);
  EXPECT_EQ(listed.actions(0).state(), v1::SUCCEEDED);
  EXPECT_EQ(listed.actions(0).runs(0).exit_code(), 0);
  EXPECT_EQ(std::set<std::string>(listed.actions(0).approved_by().begin(),
                                  listed.actions(0).approved_by().end()),
            (std::set<std::string>{"bob", "carol"}));

  CommandResult verify = Cli(victor, {"audit", "verify"});
  EXPECT_EQ(verify.exit_code, 0) << verify.output;

  // A viewer reads but does not act on incidents.
  CommandResult ack = Cli(victor, {"incident", "ack", incident});
  EXPECT_EQ(ack.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(ack.output, "responder")) << ack.output;
  EXPECT_EQ(Cli(rita, {"incident", "ack", incident}).exit_code, 0);
}

// A real lock wait: the suggested fix of BlockedQueries is filled with the pid that pg_lock_waits
// names as the blocker (not the waiter), proposed by its number, approved by two people, and the
// blocker is gone. A circuit breaker of one run per host then refuses a second termination until
// an admin re-arms it, with a reason, on the timeline.
TEST_F(RemediationTest, SuggestedFixTerminatesTheBlockerAndTheBreakerHoldsTheNext) {
  testing::WriteFile(dir_.File("rules.yaml"), R"(rules:
  - alert: BlockedQueries
    expr: pg_blocked_queries > 0
    diagnostics: [pg_lock_waits]
    suggest:
      - {action: pg_terminate_backend, params: {pid: "{pg_lock_waits.blocking_pid}"}}
)");
  testing::WriteFile(dir_.File("policy.yaml"), R"(actions:
  pg_terminate_backend: {approvals: 2, breaker: {per_host: 1, window: 1h}}
)");
  testing::PostgresServer postgres(dir_.path());
  ASSERT_TRUE(postgres.ok());
  admin_ = AddUser("root", "admin");
  const std::string alice = AddUser("alice", "commander");
  const std::string bob = AddUser("bob", "commander");
  const std::string carol = AddUser("carol", "commander");
  StartController({"--policy=" + dir_.File("policy.yaml")});
  std::unique_ptr<Subprocess> agent = StartDatabaseAgent(postgres);

  auto holder = postgres.Background(
      "BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 1; SELECT pg_sleep(60); COMMIT;",
      "app");
  auto pid_of = [&](const std::string& like) {
    int pid = 0;
    CommandResult r = postgres.Psql(absl::StrCat(
        "SELECT pid FROM pg_stat_activity WHERE query LIKE '", like,
        "' AND state <> 'idle' AND pid <> pg_backend_pid() LIMIT 1"));
    return absl::SimpleAtoi(absl::StripAsciiWhitespace(r.stdout_text), &pid) ? pid : 0;
  };
  int blocker = 0;
  ASSERT_TRUE(WaitUntil([&] { return (blocker = pid_of("%pg_sleep(60)%")) > 0; },
                        absl::Seconds(10)));
  auto waiter_session = postgres.Background(
      "UPDATE accounts SET balance = balance + 1 WHERE id = 1; /* waiter */", "app");
  int waiter = 0;
  ASSERT_TRUE(WaitUntil([&] { return (waiter = pid_of("%waiter%")) > 0; }, absl::Seconds(10)));

  // The incident shows suggestion 1 filled with the blocker's pid, and the row that says so.
  std::string incident;
  v1::SuggestedAction suggestion;
  ASSERT_TRUE(WaitUntil(
      [&] {
        v1::ListIncidentsResponse r;
        CommandResult c = Cli(alice, {"incidents", "-o", "json"});
        if (c.exit_code != 0 || !ParseJson(c.stdout_text, &r) || r.incidents().empty()) {
          return false;
        }
        incident = r.incidents(0).id();
        v1::GetIncidentResponse shown;
        if (!ParseJson(Cli(alice, {"incident", "show", incident, "-o", "json"}).stdout_text,
                       &shown) ||
            shown.suggestions().empty() || !shown.suggestions(0).missing().empty()) {
          return false;
        }
        suggestion = shown.suggestions(0);
        return true;
      },
      absl::Seconds(30)))
      << controller_->Output();
  EXPECT_EQ(suggestion.params().at("pid"), absl::StrCat(blocker)) << suggestion.evidence();
  EXPECT_NE(suggestion.params().at("pid"), absl::StrCat(waiter));
  EXPECT_TRUE(absl::StrContains(suggestion.evidence(), absl::StrCat("blocked_pid=", waiter)))
      << suggestion.evidence();
  CommandResult text = Cli(alice, {"incident", "show", incident});
  EXPECT_TRUE(absl::StrContains(text.stdout_text, "Suggested fixes:")) << text.stdout_text;
  EXPECT_TRUE(absl::StrContains(text.stdout_text, absl::StrCat("pid=", blocker)))
      << text.stdout_text;

  CommandResult mixed = Cli(alice, {"action", "propose", incident, "--suggestion", "1",
                                    "--agent", "db-1"});
  EXPECT_EQ(mixed.exit_code, 2) << mixed.output;
  CommandResult proposed =
      Cli(alice, {"action", "propose", incident, "--suggestion", "1", "-o", "json"});
  ASSERT_EQ(proposed.exit_code, 0) << proposed.output;
  v1::ActionProposal proposal;
  ASSERT_TRUE(ParseJson(proposed.stdout_text, &proposal)) << proposed.stdout_text;
  EXPECT_EQ(proposal.params().at("pid"), absl::StrCat(blocker));
  EXPECT_EQ(proposal.suggested_by_rule(), "BlockedQueries");
  EXPECT_EQ(proposal.approvals_required(), 2);
  ASSERT_EQ(Cli(bob, {"action", "approve", proposal.id()}).exit_code, 0);
  ASSERT_EQ(Cli(carol, {"action", "approve", proposal.id()}).exit_code, 0);
  ASSERT_TRUE(WaitUntil(
      [&] {
        return postgres
                   .Psql(absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE pid = ",
                                      blocker))
                   .stdout_text == "0\n";
      },
      absl::Seconds(15)))
      << agent->Output();
  // The waiter got its lock and finished: it was never the one to kill.
  EXPECT_TRUE(WaitUntil([&] { return pid_of("%waiter%") == 0; }, absl::Seconds(10)));

  // One termination per host per hour: the next proposal is refused with the count and when.
  CommandResult again = Cli(alice, {"action", "propose", incident, "--agent", "db-1", "--action",
                                    "pg_terminate_backend", "--param", "pid=1"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(again.output, "ran 1 time(s) on db-1 in the last 1h (at most 1 "
                                              "per host); it may run there again at"))
      << again.output;
  CommandResult by_commander = Cli(alice, {"action", "rearm", incident, "--action",
                                           "pg_terminate_backend", "--reason", "x"});
  EXPECT_EQ(by_commander.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(by_commander.output, "admin")) << by_commander.output;
  CommandResult rearmed =
      Cli(admin_, {"action", "rearm", incident, "--action", "pg_terminate_backend", "--agent",
                   "db-1", "--reason", "a second blocker, same deploy"});
  ASSERT_EQ(rearmed.exit_code, 0) << rearmed.output;
  EXPECT_TRUE(absl::StrContains(rearmed.stdout_text, "re-armed on db-1 by root"))
      << rearmed.stdout_text;
  CommandResult after = Cli(alice, {"action", "propose", incident, "--agent", "db-1", "--action",
                                    "pg_terminate_backend", "--param", "pid=1"});
  EXPECT_EQ(after.exit_code, 0) << after.output;
  v1::GetIncidentResponse shown;
  ASSERT_TRUE(
      ParseJson(Cli(alice, {"incident", "show", incident, "-o", "json"}).stdout_text, &shown));
  bool on_timeline = false;
  for (const auto& e : shown.timeline()) {
    on_timeline = on_timeline || (e.kind() == "breaker_rearmed" && e.actor() == "root" &&
                                  absl::StrContains(e.summary(), "same deploy"));
  }
  EXPECT_TRUE(on_timeline);
  EXPECT_EQ(Cli(alice, {"audit", "verify"}).exit_code, 0);
}

// A worker under a real supervisord, restarted through the whole flow by agents whose service
// manager is supervisorctl. A rollout in waves of one stops at the first agent that refuses.
TEST_F(RemediationTest, RolloutInWavesStopsAtTheFirstFailureThenRestartsUnderSupervisord) {
  testing::WriteFile(dir_.File("rules.yaml"), R"(rules:
  - alert: AlwaysOn
    expr: host_load1 >= 0
    severity: SEV4
)");
  const std::string conf = dir_.File("supervisord.conf");
  const std::string socket = dir_.File("supervisor.sock");
  testing::WriteFile(
      conf, absl::StrCat("[unix_http_server]\nfile=", socket,
                         "\n\n[supervisord]\nnodaemon=true\nlogfile=", dir_.File("supervisord.log"),
                         "\npidfile=", dir_.File("supervisord.pid"), "\nchildlogdir=", dir_.path(),
                         "\n\n[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
                         "supervisor.rpcinterface:make_main_rpcinterface\n\n"
                         "[supervisorctl]\nserverurl=unix://",
                         socket, "\n\n[program:worker]\ncommand=sleep 1000\nstartsecs=1\n"));
  Subprocess supervisord({"supervisord", "-n", "-c", conf}, std::map<std::string, std::string>{},
                         dir_.File("supervisord.out"));
  auto worker_pid = [&] {
    int pid = 0;
    CommandResult r = RunCommand({"supervisorctl", "-c", conf, "pid", "worker"});
    return absl::SimpleAtoi(absl::StripAsciiWhitespace(r.stdout_text), &pid) ? pid : 0;
  };
  ASSERT_TRUE(WaitUntil([&] { return worker_pid() > 0; }, absl::Seconds(30)))
      << testing::ReadFileOrEmpty(dir_.File("supervisord.log"));

  admin_ = AddUser("root", "admin");
  const std::string alice = AddUser("alice", "commander");
  const std::string bob = AddUser("bob", "commander");
  StartController();
  std::vector<std::unique_ptr<Subprocess>> agents;
  for (const auto& [id, units] : std::vector<std::pair<std::string, std::string>>{
           {"w-1", "[worker]"}, {"w-2", "[worker]"}, {"w-3", "[\"azalscore@*\"]"}}) {
    testing::WriteFile(dir_.File(id + ".yaml"),
                       absl::StrCat("id: ", id,
                                    "\nlabels: {role: worker}\ncollectors:\n  host: {}\n"
                                    "actions:\n  restart_service: {units: ",
                                    units, "}\nservice_manager: {restart: \"supervisorctl -c ",
                                    conf, " restart {unit}\"}\ncontroller_public_key: ",
                                    dir_.File("controller-signing.pub"),
                                    "\njournal: ", dir_.File(id + ".journal"), "\n"));
    agents.push_back(std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-agent"), "--controller=" + address_,
                                 "--config=" + dir_.File(id + ".yaml"), "--insecure"},
        std::map<std::string, std::string>{}, dir_.File(id + ".log")));
  }
  std::string incident;
  ASSERT_TRUE(WaitUntil(
      [&] {
        v1::ListIncidentsResponse r;
        if (!ParseJson(Cli(alice, {"incidents", "-o", "json"}).stdout_text, &r) ||
            r.incidents().empty() || r.incidents(0).agents_size() < 3) {
          return false;
        }
        incident = r.incidents(0).id();
        return true;
      },
      absl::Seconds(20)))
      << controller_->Output();

  auto run = [&](std::vector<std::string> targets) {
    std::vector<std::string> args = {
        "action",      "propose", incident, "--action", "restart_service", "--param", "unit=worker",
        "--wave-size", "1",       "-o",     "json"};
    for (const std::string& t : targets) {
      args.insert(args.end(), {"--agent", t});
    }
    v1::ActionProposal p;
    CommandResult proposed = Cli(alice, args);
    EXPECT_TRUE(ParseJson(proposed.stdout_text, &p)) << proposed.output;
    EXPECT_EQ(p.approvals_required(), 1);
    EXPECT_EQ(Cli(bob, {"action", "approve", p.id()}).exit_code, 0);
    v1::ListActionsResponse listed;
    EXPECT_TRUE(WaitUntil(
        [&] {
          ParseJson(Cli(alice, {"actions", "--incident", incident, "-o", "json"}).stdout_text,
                    &listed);
          for (const auto& a : listed.actions()) {
            if (a.id() == p.id()) {
              p = a;
            }
          }
          return p.state() == v1::SUCCEEDED || p.state() == v1::FAILED;
        },
        absl::Seconds(30)));
    return p;
  };

  // w-3 does not allow the unit: the first wave fails and the others never receive anything.
  const int before = worker_pid();
  v1::ActionProposal stopped = run({"w-3", "w-1", "w-2"});
  EXPECT_EQ(stopped.state(), v1::FAILED);
  ASSERT_EQ(stopped.runs_size(), 3);
  EXPECT_EQ(stopped.runs(0).state(), "refused");
  EXPECT_TRUE(absl::StrContains(stopped.runs(0).reason(), "unit 'worker' is not allowed"))
      << stopped.runs(0).reason();
  EXPECT_EQ(stopped.runs(1).state(), "skipped");
  EXPECT_EQ(stopped.runs(2).state(), "skipped");
  EXPECT_TRUE(absl::StrContains(stopped.reason(), "stopped at wave 1")) << stopped.reason();
  EXPECT_EQ(worker_pid(), before);

  // The two that allow it, one wave each: the worker is restarted, twice.
  v1::ActionProposal done = run({"w-1", "w-2"});
  EXPECT_EQ(done.state(), v1::SUCCEEDED) << done.DebugString();
  ASSERT_EQ(done.runs_size(), 2);
  EXPECT_EQ(done.runs(0).wave(), 0);
  EXPECT_EQ(done.runs(1).wave(), 1);
  EXPECT_EQ(done.runs(1).exit_code(), 0);
  ASSERT_TRUE(WaitUntil([&] { return worker_pid() > 0; }, absl::Seconds(10)));
  EXPECT_NE(worker_pid(), before);

  v1::GetIncidentResponse shown;
  ASSERT_TRUE(
      ParseJson(Cli(alice, {"incident", "show", incident, "-o", "json"}).stdout_text, &shown));
  int waves = 0;
  bool refused = false;
  for (const auto& e : shown.timeline()) {
    waves += e.kind() == "action_dispatched" && absl::StrContains(e.summary(), "/2:");
    refused = refused || (e.kind() == "action_refused" && e.actor() == "w-3");
  }
  EXPECT_EQ(waves, 2);
  EXPECT_TRUE(refused);
  EXPECT_EQ(Cli(alice, {"audit", "verify"}).exit_code, 0);
  supervisord.Stop(absl::Seconds(15));
}

}  // namespace
}  // namespace vigil
