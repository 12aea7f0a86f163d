// The runbooks' remaining diagnostics against real things: an application log rotated by the real
// logrotate under the app_log collector, PostgreSQL connections by state and pg_stat_statements
// on the real server, and the unit of processes a real supervisord runs.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "agent/collectors/app_log_collector.h"
#include "agent/collectors/host_collector.h"
#include "agent/collectors/postgres_collector.h"
#include "tests/support/servers.h"

namespace vigil::agent {
namespace {

using testing::ReadFileOrEmpty;
using testing::RunCommand;
using testing::WaitUntil;

// --- app_log across real logrotate runs ---------------------------------------------------------

class AppLogRotationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(log_) << "";
    auto made = NewAppLogCollector(
        YAML::Load(absl::StrCat("{files: ['", log_,
                                "'], patterns: ['ERROR \\[(?P<module>[^\\]]+)\\]', "
                                "'Traceback|Exception']}")),
        "agent.yaml");
    ASSERT_TRUE(made.ok()) << made.status();
    collector_ = std::move(*made);
    Round();  // opens the file at its end
  }
  void Append(const std::string& module, int n) {
    std::ofstream out(log_, std::ios::app);
    for (int i = 0; i < n; ++i) {
      out << "2026-11-30 10:00:00,123 ERROR [" << module << "] failure " << i << "\n";
      out << "2026-11-30 10:00:00,124 INFO [" << module << "] fine\n";
    }
  }
  // Errors per module this round (the interval is 1 s, so rates are counts).
  std::map<std::string, double> Round() {
    Collection c;
    now_ += absl::Seconds(1);
    collector_->Collect(now_, c);
    std::map<std::string, double> out;
    for (const auto& g : c.gauges) {
      if (g.name == "app_log_errors_per_second") out[g.labels.at("module")] = g.value;
      if (g.name == "app_log_up") up_ = g.value;
    }
    return out;
  }
  void Logrotate(const std::string& mode) {
    const std::string conf = dir_.File("logrotate.conf");
    testing::WriteFile(conf, absl::StrCat(log_, " {\n  rotate 3\n  ", mode, "\n  missingok\n}\n"));
    auto r = RunCommand({"logrotate", "-f", "-s", dir_.File("state"), conf}, absl::Seconds(20));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  testing::TempDir dir_;
  std::string log_ = dir_.File("app.log");
  std::unique_ptr<Collector> collector_;
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
  double up_ = -1;
};

TEST_F(AppLogRotationTest, RenameAndCreateCountsEveryErrorOnce) {
  Append("billing", 3);
  EXPECT_EQ(Round()["billing"], 3);
  EXPECT_EQ(up_, 1);
  Append("billing", 2);  // written before the rotation, read after it
  Logrotate("create");
  ASSERT_TRUE(std::filesystem::exists(log_ + ".1"));
  Append("search", 4);
  auto r = Round();
  EXPECT_EQ(r["billing"], 2);
  EXPECT_EQ(r["search"], 4);
  Append("search", 1);
  EXPECT_EQ(Round()["search"], 1);
  auto tables = collector_->Diagnose(now_, {"app_log_top_modules", "app_log_last_errors"});
  ASSERT_EQ(tables.size(), 2u);
  ASSERT_EQ(tables[0].rows_size(), 2);
  EXPECT_EQ(tables[0].rows(0).cells(0), "billing");
  EXPECT_EQ(tables[0].rows(0).cells(1), "5");
  EXPECT_EQ(tables[0].rows(1).cells(1), "5");
  ASSERT_EQ(tables[1].rows_size(), 10);
  EXPECT_TRUE(absl::StrContains(tables[1].rows(0).cells(3), "ERROR [search] failure 0"));
}

TEST_F(AppLogRotationTest, CopytruncateAndARecreatedFileCountEveryErrorOnce) {
  Append("auth", 2);
  EXPECT_EQ(Round()["auth"], 2);
  Logrotate("copytruncate");
  Append("auth", 1);
  EXPECT_EQ(Round()["auth"], 1);
  std::filesystem::remove(log_);
  std::filesystem::remove(log_ + ".1");
  Round();
  // The tailer keeps the deleted file open until a new one appears: still readable.
  std::ofstream(log_) << "";
  Append("auth", 1);
  EXPECT_EQ(Round()["auth"], 1) << "the new file is read from its start";
  EXPECT_EQ(up_, 1);
}

// --- PostgreSQL: connections by state, pg_stat_statements ---------------------------------------

class PostgresDetailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_->ok()) << ReadFileOrEmpty(dir_.File("postgres.log"));
    PostgresCollectorOptions options;
    options.dsn = server_->Dsn("vigil");
    options.query_timeout = absl::Seconds(2);
    collector_ = std::make_unique<PostgresCollector>(options);
  }
  std::map<std::string, double> States() {
    Collection c;
    collector_->Collect(absl::Now(), c);
    std::map<std::string, double> out;
    for (const auto& g : c.gauges) {
      if (g.name == "pg_connections") out[g.labels.at("state")] = g.value;
      if (g.name == "pg_up") up_ = g.value;
    }
    return out;
  }
  testing::TempDir dir_;
  std::unique_ptr<testing::PostgresServer> server_ =
      std::make_unique<testing::PostgresServer>(dir_.path());
  std::unique_ptr<PostgresCollector> collector_;
  double up_ = -1;
};

// One test, one server: starting PostgreSQL is most of the time a test takes here (ctest runs
// each test in its own process).
TEST_F(PostgresDetailTest, ConnectionsByStateAndTopStatementsOfRealSessions) {
  {
    SCOPED_TRACE("connections by state");
    auto idle = States();
    EXPECT_EQ(up_, 1);
    EXPECT_EQ(idle.size(), std::size(kPgConnectionStates)) << "every state, zeros included";
    EXPECT_EQ(idle["active"], 0) << "the agent's own session is left out";
    // One session idle in a transaction, one in an aborted transaction, one plain idle, one busy.
    pqxx::connection in_tx(server_->Dsn("app"));
    pqxx::nontransaction(in_tx).exec("BEGIN; SELECT 1");
    pqxx::connection aborted(server_->Dsn("app"));
    {
      pqxx::nontransaction tx(aborted);
      tx.exec("BEGIN");
      EXPECT_THROW(tx.exec("SELECT 1/0"), pqxx::sql_error);
    }
    pqxx::connection plain(server_->Dsn("app"));
    auto sleeper = server_->Background("SELECT pg_sleep(5)", "app");
    std::map<std::string, double> s;
    ASSERT_TRUE(WaitUntil(
        [&] {
          s = States();
          return s["active"] >= 1;
        },
        absl::Seconds(5)));
    EXPECT_EQ(s["idle in transaction"], 1);
    EXPECT_EQ(s["idle in transaction (aborted)"], 1);
    EXPECT_GE(s["idle"], 1);
    auto tables = collector_->Diagnose(absl::Now(), {"pg_connections_by_state"});
    ASSERT_EQ(tables.size(), 1u);
    EXPECT_TRUE(tables[0].error().empty()) << tables[0].error();
    std::map<std::string, std::string> by_state;
    for (const auto& row : tables[0].rows()) by_state[row.cells(0)] = row.cells(1);
    EXPECT_EQ(by_state["idle in transaction"], "1");
    EXPECT_EQ(by_state["idle in transaction (aborted)"], "1");
    EXPECT_EQ(by_state["active"], "1");
  }
  SCOPED_TRACE("pg_top_statements");
  auto tables = collector_->Diagnose(absl::Now(), {"pg_top_statements"});
  ASSERT_EQ(tables.size(), 1u);
  EXPECT_EQ(tables[0].rows_size(), 0);
  EXPECT_TRUE(absl::StrContains(tables[0].error(), "CREATE EXTENSION pg_stat_statements"))
      << tables[0].error();
  EXPECT_TRUE(absl::StrContains(tables[0].error(), "database postgres")) << tables[0].error();
  States();
  EXPECT_EQ(up_, 1) << "a missing extension is not a server that is down";

  auto created = server_->Psql("CREATE EXTENSION pg_stat_statements");
  ASSERT_EQ(created.exit_code, 0) << created.output;
  // The sleeper above ended with its client; its backend may still be finishing pg_sleep(5),
  // and would then be counted as the top statement. Wait for it, then count from zero.
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto left = server_->Psql(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(5)'");
        return left.exit_code == 0 && absl::StripAsciiWhitespace(left.stdout_text) == "0";
      },
      absl::Seconds(15)));
  ASSERT_EQ(server_->Psql("SELECT pg_stat_statements_reset()").exit_code, 0);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(server_->Psql("SELECT pg_sleep(0.2)", "app").exit_code, 0);
  }
  ASSERT_EQ(server_->Psql("ALTER ROLE app PASSWORD 'hunter2-secret'").exit_code, 0);
  tables = collector_->Diagnose(absl::Now(), {"pg_top_statements"});
  ASSERT_EQ(tables.size(), 1u);
  ASSERT_TRUE(tables[0].error().empty()) << tables[0].error();
  ASSERT_GE(tables[0].rows_size(), 1);
  const auto& top = tables[0].rows(0);
  EXPECT_TRUE(absl::StrContains(top.cells(5), "pg_sleep")) << tables[0].DebugString();
  EXPECT_EQ(top.cells(1), "3");
  double mean_ms = 0;
  ASSERT_TRUE(absl::SimpleAtod(top.cells(2), &mean_ms));
  EXPECT_GE(mean_ms, 200);
  for (const auto& row : tables[0].rows()) {
    EXPECT_FALSE(absl::StrContains(row.cells(5), "hunter2")) << row.cells(5);
  }
}

// --- the unit of processes run by a real supervisord ---------------------------------------------

TEST(SupervisorUnits, TopProcessesNameTheProgramOfChildrenAndGrandchildren) {
  testing::TempDir dir;
  const std::string conf = dir.File("supervisord.conf");
  const std::string socket = dir.File("supervisor.sock");
  // The program's shell and its own child (a grandchild of supervisord) both hold 32 MiB.
  const std::string hog = "python3 -c 'import time; x = b\\\"x\\\" * (32 << 20); time.sleep(60)'";
  testing::WriteFile(
      conf, absl::StrCat("[unix_http_server]\nfile=", socket,
                         "\n\n[supervisord]\nnodaemon=true\nlogfile=", dir.File("supervisord.log"),
                         "\npidfile=", dir.File("supervisord.pid"), "\nchildlogdir=", dir.path(),
                         "\n\n[rpcinterface:supervisor]\n"
                         "supervisor.rpcinterface_factory = "
                         "supervisor.rpcinterface:make_main_rpcinterface\n\n"
                         "[supervisorctl]\nserverurl=unix://",
                         socket, "\n\n[program:memhog]\ncommand=sh -c \"", hog, " & ", hog,
                         "; wait\"\nstartsecs=1\nstopasgroup=true\nkillasgroup=true\n"));
  testing::Subprocess supervisord({"supervisord", "-n", "-c", conf}, {},
                                  dir.File("supervisord.out"));
  int pid = 0;
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto r = RunCommand({"supervisorctl", "-c", conf, "pid", "memhog"}, absl::Seconds(10));
        return absl::SimpleAtoi(absl::StripAsciiWhitespace(r.stdout_text), &pid) && pid > 0;
      },
      absl::Seconds(30), absl::Milliseconds(200)))
      << ReadFileOrEmpty(dir.File("supervisord.log"));
  auto made =
      NewHostCollector(YAML::Load("{unit_source: supervisor, top_processes: 1000}"), "agent.yaml");
  ASSERT_TRUE(made.ok()) << made.status();
  std::map<std::string, std::string> unit_by_pid;
  int pythons = 0;
  ASSERT_TRUE(WaitUntil(
      [&] {
        Collection c;
        (*made)->Collect(absl::Now(), c);
        auto tables = (*made)->Diagnose(absl::Now(), {"top_processes_memory"});
        unit_by_pid.clear();
        pythons = 0;
        for (const auto& row : tables.at(0).rows()) {
          unit_by_pid[row.cells(0)] = row.cells(5);
          pythons += row.cells(1) == "python3" && row.cells(5) == "memhog" ? 1 : 0;
        }
        return pythons == 2;
      },
      absl::Seconds(15), absl::Milliseconds(300)))
      << "python3 processes named memhog: " << pythons;
  EXPECT_EQ(unit_by_pid[absl::StrCat(pid)], "memhog") << "the program's own process";
  EXPECT_EQ(unit_by_pid[absl::StrCat(getpid())], "") << "this test is not run by supervisord";
  supervisord.Stop(absl::Seconds(15));
}

}  // namespace
}  // namespace vigil::agent
