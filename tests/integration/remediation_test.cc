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
#include "tests/support/servers.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;
using testing::Subprocess;
using testing::WaitUntil;

template <typename Message>
bool ParseJson(const std::string& json, Message* message) {
  message->Clear();
  return google::protobuf::util::JsonStringToMessage(json, message).ok();
}

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

  void StartController() {
    controller_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-controller"), "--listen=" + address_,
                                 "--db=" + dir_.File("vigil.db"), "--insecure", "--http-listen=off",
                                 "--rules=" + dir_.File("rules.yaml")},
        std::map<std::string, std::string>{}, dir_.File("controller.log"));
    ASSERT_TRUE(
        WaitUntil([&] { return Cli(admin_, {"agents"}).exit_code == 0; }, absl::Seconds(10)))
        << controller_->Output();
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

  // The agent trusts the key the controller made on its first start.
  testing::WriteFile(dir_.File("db-1.yaml"),
                     absl::StrCat("id: db-1\nlabels: {role: postgres, service: postgres}\n"
                                  "collectors:\n  postgres: {dsn: '",
                                  postgres.Dsn("vigil"),
                                  "'}\n"
                                  "actions:\n  pg_terminate_backend: {}\n"
                                  "controller_public_key: ",
                                  dir_.File("controller-signing.pub"),
                                  "\njournal: ", dir_.File("db-1.journal"), "\n"));
  Subprocess agent({BinaryPath("vigil-agent"), "--controller=" + address_,
                    "--config=" + dir_.File("db-1.yaml"), "--insecure"},
                   std::map<std::string, std::string>{}, dir_.File("agent.log"));

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
      << agent.Output();

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

}  // namespace
}  // namespace vigil
