// One agent with all four collectors against real nginx, PostgreSQL and Redis, seen through the
// controller and `vigil metrics`: histogram-derived p95/p99 and every service's metrics.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "agent/collectors/log_format.h"
#include "tests/support/servers.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::WaitUntil;

TEST(ServiceMetrics, VigilMetricsShowsEveryCollector) {
  testing::TempDir dir;
  testing::HttpUpstream upstream;
  upstream.SetRoute("/api", absl::Milliseconds(50), 200);
  testing::NginxServer nginx(dir.path(), upstream.port());
  testing::PostgresServer postgres(dir.path());
  testing::RedisServer redis(dir.path());
  ASSERT_TRUE(nginx.ok() && postgres.ok() && redis.ok());

  const std::string address = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
  testing::WriteFile(dir.File("agent.yaml"),
                     absl::StrCat("id: web-1\nlabels: {role: api}\ncollectors:\n  host: {}\n",
                                  "  nginx: {access_log: '", nginx.access_log(), "', log_format: '",
                                  agent::LogFormat::kTimedCombined, " $upstream_response_time'}\n",
                                  "  postgres: {dsn: '", postgres.Dsn("vigil"), "'}\n",
                                  "  redis: {address: '127.0.0.1:", redis.port(), "'}\n",
                                  "spool_dir: ", dir.File("web-1.spool"), "\n"));
  const std::string token = testing::AddVigilUser(dir.File("vigil.db"), "tester", "viewer");
  testing::Subprocess controller({BinaryPath("vigil-controller"), "--listen=" + address,
                                  "--db=" + dir.File("vigil.db"), "--insecure",
                                  "--http-listen=off"});
  testing::Subprocess agent({BinaryPath("vigil-agent"), "--controller=" + address,
                             "--config=" + dir.File("agent.yaml"), "--insecure"});
  std::atomic<bool> traffic{true};
  std::thread load([&] {
    while (traffic) testing::HttpGet(nginx.port(), "/api?page=1");
  });
  v1::GetMetricsResponse response;
  const bool complete = WaitUntil(
      [&] {
        auto r = testing::RunCommand({BinaryPath("vigil"), "--controller=" + address, "--insecure",
                                      "--token=" + token, "metrics", "web-1", "-o", "json"});
        response.Clear();
        if (r.exit_code != 0 ||
            !google::protobuf::util::JsonStringToMessage(r.stdout_text, &response).ok()) {
          return false;
        }
        std::set<std::string> names;
        for (const auto& m : response.metrics()) {
          if (!m.is_histogram() || m.window_count() > 0) names.insert(m.name());
        }
        for (const char* want :
             {"host_cpu_usage_ratio", "nginx_requests_per_second", "nginx_request_duration_seconds",
              "nginx_error_ratio", "pg_active_connections", "pg_connections_used_ratio",
              "pg_longest_query_seconds", "pg_blocked_queries", "redis_ops_per_second",
              "redis_keyspace_hit_ratio", "redis_connected_clients", "redis_used_memory_bytes"}) {
          if (!names.count(want)) return false;
        }
        return true;
      },
      absl::Seconds(20), absl::Milliseconds(500));
  traffic = false;
  load.join();
  ASSERT_TRUE(complete) << response.DebugString() << agent.Output();
  for (const auto& m : response.metrics()) {
    if (m.name() == "nginx_request_duration_seconds") {
      EXPECT_TRUE(m.is_histogram());
      EXPECT_GE(m.p95(), 0.045) << "50 ms upstream";
      EXPECT_LT(m.p95(), 1.0);
      EXPECT_GE(m.p99(), m.p95());
    }
    if (m.name() == "pg_up" || m.name() == "redis_up" || m.name() == "nginx_up") {
      EXPECT_EQ(m.value(), 1) << m.name();
    }
  }
  auto table = testing::RunCommand({BinaryPath("vigil"), "--controller=" + address, "--insecure",
                                    "--token=" + token, "metrics", "web-1"});
  EXPECT_NE(table.stdout_text.find("nginx_request_duration_seconds"), std::string::npos)
      << table.stdout_text;
}

}  // namespace
}  // namespace vigil
