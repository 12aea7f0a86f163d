// The PostgreSQL and Redis collectors against real servers on loopback, with real faults.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/collectors/nginx_collector.h"
#include "agent/collectors/postgres_collector.h"
#include "agent/collectors/redis_collector.h"
#include "tests/support/servers.h"

namespace vigil::agent {
namespace {

using testing::WaitUntil;

std::map<std::string, double> Round(Collector& collector) {
  Collection c;
  collector.Collect(absl::Now(), c);
  std::map<std::string, double> values;
  for (const auto& g : c.gauges) values[g.name] = g.value;
  return values;
}

std::unique_ptr<Collector> Postgres(const testing::PostgresServer& server) {
  PostgresCollectorOptions options;
  options.dsn = server.Dsn("vigil");
  options.query_timeout = absl::Seconds(1);
  return std::make_unique<PostgresCollector>(options);
}

class PostgresCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.ok()) << testing::ReadFileOrEmpty(dir_.File("postgres.log"));
  }
  testing::TempDir dir_;
  testing::PostgresServer server_{dir_.path()};
};

TEST_F(PostgresCollectorTest, IdleServerReportsUpAndNoLongQuery) {
  auto collector = Postgres(server_);
  auto v = Round(*collector);
  EXPECT_EQ(v["pg_up"], 1);
  EXPECT_EQ(v["pg_longest_query_seconds"], 0) << "the agent's own query is never the slow one";
  EXPECT_EQ(v["pg_blocked_queries"], 0);
  EXPECT_GT(v["pg_connections_used_ratio"], 0);
  EXPECT_LT(v["pg_connections_used_ratio"], 0.2);
}

TEST_F(PostgresCollectorTest, PgSleepShowsAsTheLongestQuery) {
  auto collector = Postgres(server_);
  auto sleeper = server_.Background("SELECT pg_sleep(6)", "app");
  ASSERT_TRUE(WaitUntil([&] { return Round(*collector)["pg_longest_query_seconds"] >= 2; },
                        absl::Seconds(10)));
  auto v = Round(*collector);
  EXPECT_GE(v["pg_active_connections"], 1);
  auto tables = collector->Diagnose(absl::Now(), {"pg_active_queries"});
  ASSERT_EQ(tables.size(), 1u);
  bool found = false;
  for (const auto& row : tables[0].rows())
    found = found || absl::StrContains(row.cells(5), "pg_sleep");
  EXPECT_TRUE(found) << tables[0].DebugString();
}

TEST_F(PostgresCollectorTest, RowLockWaitIsCountedWithTheRightPids) {
  auto collector = Postgres(server_);
  // The holder takes the row lock and sleeps inside its transaction; the waiter queues behind it.
  auto holder = server_.Background(
      "BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 1; SELECT pg_sleep(8); COMMIT;",
      "app");
  // psql sends the whole string as one query: once it is active, the UPDATE holds its lock.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return server_
                   .Psql(
                       "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'BEGIN; UPDATE%'"
                       " AND state = 'active'")
                   .stdout_text == "1\n";
      },
      absl::Seconds(5)));
  auto waiter = server_.Background("UPDATE accounts SET balance = balance + 1 WHERE id = 1", "app");
  ASSERT_TRUE(
      WaitUntil([&] { return Round(*collector)["pg_blocked_queries"] >= 1; }, absl::Seconds(5)));
  const std::string holder_pid =
      server_.Psql("SELECT pid FROM pg_stat_activity WHERE query LIKE 'BEGIN; UPDATE%'")
          .stdout_text;
  const std::string waiter_pid = server_
                                     .Psql(
                                         "SELECT pid FROM pg_stat_activity WHERE query LIKE "
                                         "'UPDATE accounts SET balance = balance + 1%'")
                                     .stdout_text;
  auto tables = collector->Diagnose(absl::Now(), {"pg_lock_waits"});
  ASSERT_EQ(tables.size(), 1u);
  ASSERT_GE(tables[0].rows_size(), 1) << tables[0].DebugString();
  EXPECT_EQ(tables[0].rows(0).cells(0) + "\n", waiter_pid);
  EXPECT_EQ(tables[0].rows(0).cells(1) + "\n", holder_pid);
}

TEST_F(PostgresCollectorTest, StoppedAndRestartedServerGoesDownThenUp) {
  auto collector = Postgres(server_);
  EXPECT_EQ(Round(*collector)["pg_up"], 1);
  server_.Stop();
  EXPECT_EQ(Round(*collector)["pg_up"], 0);
  server_.Start();
  ASSERT_TRUE(server_.ok());
  // The collector retries with backoff (1 s, then 2 s, ...).
  EXPECT_TRUE(WaitUntil([&] { return Round(*collector)["pg_up"] == 1; }, absl::Seconds(10)));
}

TEST_F(PostgresCollectorTest, HungServerCostsOneTimeoutNotAStuckThread) {
  auto collector = Postgres(server_);
  EXPECT_EQ(Round(*collector)["pg_up"], 1);
  server_.process().Signal(SIGSTOP);  // the postmaster and, through it, new work freeze
  // Freeze this server's backends too (the collector's own among them), and only this server's.
  const std::string postmaster = absl::StrCat(server_.process().pid());
  testing::RunCommand({"pkill", "-STOP", "-P", postmaster});
  const absl::Time start = absl::Now();
  auto v = Round(*collector);
  const absl::Duration took = absl::Now() - start;
  testing::RunCommand({"pkill", "-CONT", "-P", postmaster});
  server_.process().Signal(SIGCONT);
  EXPECT_EQ(v["pg_up"], 0);
  EXPECT_LT(took, absl::Seconds(3)) << "query timeout 1 s + the watchdog's 0.5 s";
}

class RedisCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.ok()); }
  std::unique_ptr<Collector> Make() {
    RedisCollectorOptions options;
    options.port = server_.port();
    options.timeout = absl::Milliseconds(500);
    return std::make_unique<RedisCollector>(options);
  }
  testing::TempDir dir_;
  testing::RedisServer server_{dir_.path()};
};

TEST_F(RedisCollectorTest, HitRatioFollowsTheIntervalNotTheLifetime) {
  auto collector = Make();
  for (int i = 0; i < 20; ++i) server_.Cli({"set", absl::StrCat("k", i), "v"});
  Round(*collector);  // baseline
  for (int i = 0; i < 20; ++i) server_.Cli({"get", absl::StrCat("k", i)});
  auto warm = Round(*collector);
  EXPECT_DOUBLE_EQ(warm["redis_keyspace_hit_ratio"], 1.0);
  EXPECT_GT(warm["redis_ops_per_second"], 0);
  EXPECT_GE(warm["redis_connected_clients"], 1);
  EXPECT_GT(warm["redis_used_memory_bytes"], 0);
  // A cache full of misses: 30 misses, 10 hits in this interval (lifetime would still be > 50 %).
  for (int i = 0; i < 30; ++i) server_.Cli({"get", absl::StrCat("missing", i)});
  for (int i = 0; i < 10; ++i) server_.Cli({"get", absl::StrCat("k", i)});
  auto cold = Round(*collector);
  EXPECT_NEAR(cold["redis_keyspace_hit_ratio"], 0.25, 1e-9);
  auto tables = collector->Diagnose(absl::Now(), {"redis_stats"});
  ASSERT_EQ(tables.size(), 1u);
  EXPECT_GT(tables[0].rows_size(), 3);
}

TEST_F(RedisCollectorTest, StoppedAndRestartedServerGoesDownThenUp) {
  auto collector = Make();
  EXPECT_EQ(Round(*collector)["redis_up"], 1);
  server_.Stop();
  EXPECT_EQ(Round(*collector)["redis_up"], 0);
  server_.Start();
  ASSERT_TRUE(server_.ok());
  EXPECT_TRUE(WaitUntil([&] { return Round(*collector)["redis_up"] == 1; }, absl::Seconds(10)));
}

TEST_F(RedisCollectorTest, HungServerCostsOneTimeout) {
  auto collector = Make();
  EXPECT_EQ(Round(*collector)["redis_up"], 1);
  server_.process().Signal(SIGSTOP);
  const absl::Time start = absl::Now();
  auto v = Round(*collector);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  server_.process().Signal(SIGCONT);
  EXPECT_EQ(v["redis_up"], 0);
}

}  // namespace
}  // namespace vigil::agent

namespace vigil::agent {
namespace {

class NginxCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(nginx_.ok()) << testing::ReadFileOrEmpty(dir_.File("nginx.log"));
    upstream_.SetRoute("/fast", absl::Milliseconds(20), 200);
    upstream_.SetRoute("/slow", absl::Milliseconds(400), 200);
    upstream_.SetRoute("/fail", absl::Milliseconds(5), 503);
  }
  std::unique_ptr<Collector> Make() {
    YAML::Node config =
        YAML::Load(absl::StrCat("{access_log: '", nginx_.access_log(), "', log_format: '",
                                LogFormat::kTimedCombined, " $upstream_response_time'}"));
    auto c = NewNginxCollector(config, "agent.yaml");
    EXPECT_TRUE(c.ok()) << c.status();
    return std::move(*c);
  }
  // nginx writes a request's log line after its response, so the client can be done first:
  // waits until the access log holds `lines` lines (a fixed pause was too short on a busy host).
  void WaitForLogLines(size_t lines) {
    ASSERT_TRUE(testing::WaitUntil(
        [&] {
          const std::string log = testing::ReadFileOrEmpty(nginx_.access_log());
          return static_cast<size_t>(std::count(log.begin(), log.end(), '\n')) >= lines;
        },
        absl::Seconds(10)))
        << "nginx logged fewer than " << lines << " requests";
  }
  testing::TempDir dir_;
  testing::HttpUpstream upstream_;
  testing::NginxServer nginx_{dir_.path(), upstream_.port()};
};

TEST_F(NginxCollectorTest, KnownLatencyMixGivesItsP95) {
  auto collector = Make();
  Collection baseline;
  collector->Collect(absl::Now(), baseline);
  // 90 % at 20 ms, 10 % at 400 ms: the p95 is a 400 ms request (plus nginx's own time).
  std::vector<std::string> paths;
  for (int i = 0; i < 400; ++i) paths.push_back(i % 10 == 0 ? "/slow" : "/fast");
  auto statuses = testing::HttpLoad(nginx_.port(), paths, 8);
  ASSERT_EQ(statuses[200], 400);
  WaitForLogLines(400);
  Collection c;
  collector->Collect(absl::Now(), c);
  ASSERT_EQ(c.histograms.size(), 1u);
  const LogHistogram& h = c.histograms[0].histogram;
  EXPECT_EQ(h.count(), 400u);
  // The exact p95 of what nginx logged, from the log itself.
  std::vector<double> times;
  LogFormat format =
      *LogFormat::Compile(absl::StrCat(LogFormat::kTimedCombined, " $upstream_response_time"));
  std::istringstream log(testing::ReadFileOrEmpty(nginx_.access_log()));
  for (std::string line; std::getline(log, line);) {
    AccessLogEntry e;
    if (format.Parse(line, &e)) times.push_back(e.request_time);
  }
  ASSERT_EQ(times.size(), 400u);
  std::sort(times.begin(), times.end());
  const double exact = times[static_cast<size_t>(0.95 * (times.size() - 1))];
  EXPECT_NEAR(h.Quantile(0.95), exact, exact * 0.02);
  EXPECT_GE(h.Quantile(0.95), 0.39);
  auto tables = collector->Diagnose(absl::Now(), {"nginx_slow_endpoints"});
  ASSERT_GE(tables[0].rows_size(), 2);
  EXPECT_EQ(tables[0].rows(0).cells(0), "/slow");
}

TEST_F(NginxCollectorTest, BurstOf5xxRaisesTheErrorRatio) {
  auto collector = Make();
  Collection baseline;
  collector->Collect(absl::Now(), baseline);
  std::vector<std::string> paths;
  for (int i = 0; i < 200; ++i) paths.push_back(i % 4 == 0 ? "/fail" : "/fast");
  auto statuses = testing::HttpLoad(nginx_.port(), paths, 4);
  ASSERT_EQ(statuses[503], 50);
  WaitForLogLines(200);
  Collection c;
  collector->Collect(absl::Now(), c);
  std::map<std::string, double> g;
  for (const auto& p : c.gauges) g[p.name] = p.value;
  EXPECT_DOUBLE_EQ(g["nginx_error_ratio"], 0.25);
  EXPECT_GT(g["nginx_requests_per_second"], 0);
  EXPECT_EQ(g["nginx_up"], 1);
  EXPECT_EQ(g["nginx_unparsed_lines"], 0);
}

}  // namespace
}  // namespace vigil::agent
