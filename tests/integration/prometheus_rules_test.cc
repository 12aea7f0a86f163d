// Prometheus rule files with the real binaries: `vigil-controller check-rules` on the performance
// runbook's snippet as written there and on unsupported PromQL (file:line:column), and a
// controller running the runbook's rules (`--rules`, shorter ranges and `for:`) on what an agent
// reads from a real nginx's access log, through the name map onto nginx's metrics.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/collectors/log_format.h"
#include "tests/support/process.h"
#include "tests/support/proto_json.h"
#include "tests/support/servers.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;
using testing::Subprocess;
using testing::WaitUntil;

TEST(CheckPrometheusRules, RunbookSnippetLoadsAndEachTranslationIsPrinted) {
  const std::string path =
      testing::SourcePath("tests/unit/controller/fixtures/performance-runbook-rules.yaml");
  CommandResult r = RunCommand({BinaryPath("vigil-controller"), "check-rules", path});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const std::string& line :
       {path + ":2: rule HighLatency: translated to `p95 by () "
               "(nginx_request_duration_seconds) > 2` with window 5m; severity 'warning' -> "
               "SEV3; 'http_request_duration_seconds' read as "
               "'nginx_request_duration_seconds' (name map)\n",
        path + ":10: rule LowThroughput: translated to "
               "`sum(rate(nginx_requests_per_second[5m])) < 100`; severity 'warning' -> SEV3; "
               "'http_requests_total' read as 'nginx_requests_per_second' (name map)\n",
        path + ": 2 rule(s), OK\n"}) {
    EXPECT_TRUE(absl::StrContains(r.stdout_text, line)) << line << "\n---\n" << r.output;
  }
}

TEST(CheckPrometheusRules, UnsupportedConstructsAreNamedWithLineAndColumn) {
  testing::TempDir dir;
  const std::string path = dir.File("team.yaml");
  testing::WriteFile(path, R"(groups:
  - name: team
    rules:
      - alert: Yesterday
        expr: sum(rate(http_requests_total[5m] offset 1d)) < 100
      - alert: Ratio
        expr: |
          sum(rate(app_errors_total[5m]))
            / ignoring (code)
          sum(rate(app_requests_total[5m])) > 0.01
      - alert: Fine
        expr: 'sum by (service) (rate(app_requests_total{job=''api''}[1m])) < 1'
      - record: service:errors:rate5m
        expr: sum(rate(app_errors_total[5m]))
)");
  CommandResult r = RunCommand({BinaryPath("vigil-controller"), "check-rules", path});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  for (const std::string& line :
       {path + ":5:48: rule Yesterday: expr: the 'offset' modifier (after a range) is not "
               "supported",
        path + ":9:15: rule Ratio: expr: vector matching modifier 'ignoring' is not supported",
        path + ":13: recording rules (record:) are not supported",
        path + ":11: rule Fine: translated to `sum by (service) "
               "(rate(app_requests_total{job=\"api\"}[1m])) < 1`",
        path + ": 3 error(s)"}) {
    EXPECT_TRUE(absl::StrContains(r.output, line)) << line << "\n---\n" << r.output;
  }
}

TEST(PrometheusRulesRun, RunbookRulesFireOnNginxThroughTheNameMap) {
  testing::TempDir dir;
  testing::HttpUpstream upstream;
  upstream.SetRoute("/api", absl::Milliseconds(300), 200);
  testing::NginxServer nginx(dir.path(), upstream.port());
  ASSERT_TRUE(nginx.ok());
  // The runbook's two alerts with its application's metric names; ranges and `for:` short
  // enough for a test, thresholds that a 300 ms upstream and one client cross.
  testing::WriteFile(dir.File("prometheus-rules.yaml"), R"(groups:
  - name: performance
    rules:
      - alert: HighLatency
        expr: histogram_quantile(0.95, rate(http_request_duration_seconds_bucket[30s])) > 0.2
        for: 2s
        labels:
          severity: critical
        annotations:
          summary: "API latency is high"
      - alert: LowThroughput
        expr: sum(rate(http_requests_total[30s])) < 100
        for: 2s
        labels:
          severity: warning
        annotations:
          summary: "API throughput is low"
)");
  CommandResult check = RunCommand(
      {BinaryPath("vigil-controller"), "check-rules", dir.File("prometheus-rules.yaml")});
  ASSERT_EQ(check.exit_code, 0) << check.output;

  const std::string address = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
  const std::string token = testing::AddVigilUser(dir.File("vigil.db"), "tester", "viewer");
  testing::WriteFile(dir.File("agent.yaml"),
                     absl::StrCat("id: api-1\nlabels: {role: api, service: rag-api}\ncollectors:\n",
                                  "  nginx: {access_log: '", nginx.access_log(), "', log_format: '",
                                  agent::LogFormat::kTimedCombined, " $upstream_response_time'}\n",
                                  "spool_dir: ", dir.File("api-1.spool"), "\n"));
  Subprocess controller(
      {BinaryPath("vigil-controller"), "--listen=" + address, "--db=" + dir.File("vigil.db"),
       "--insecure", "--http-listen=off", "--rules=" + dir.File("prometheus-rules.yaml")},
      {}, dir.File("controller.log"));
  Subprocess agent({BinaryPath("vigil-agent"), "--controller=" + address,
                    "--config=" + dir.File("agent.yaml"), "--insecure", "--interval=1s"},
                   {}, dir.File("agent.log"));
  std::atomic<bool> traffic{true};
  std::thread load([&] {
    while (traffic) {
      testing::HttpGet(nginx.port(), "/api");
    }
  });
  struct StopLoad {
    std::atomic<bool>& traffic;
    std::thread& load;
    ~StopLoad() {
      traffic = false;
      load.join();
    }
  } stop_load{traffic, load};

  std::map<std::string, v1::Alert> firing;
  const bool both = WaitUntil(
      [&] {
        v1::ListAlertsResponse r;
        CommandResult c = RunCommand({BinaryPath("vigil"), "--controller=" + address, "--insecure",
                                      "--token=" + token, "alerts", "-o", "json"});
        if (c.exit_code != 0 || !testing::ParseJson(c.stdout_text, &r)) {
          return false;
        }
        for (const v1::Alert& a : r.alerts()) {
          if (a.state() == v1::FIRING) {
            firing[a.rule()] = a;
          }
        }
        return firing.count("HighLatency") == 1 && firing.count("LowThroughput") == 1;
      },
      absl::Seconds(60), absl::Milliseconds(500));
  ASSERT_TRUE(both) << controller.Output() << agent.Output();
  const v1::Alert& latency = firing["HighLatency"];
  EXPECT_EQ(latency.agent_id(), "api-1");
  EXPECT_EQ(latency.severity(), v1::SEV1);  // severity: critical
  // nginx's $request_time of a 300 ms upstream, within the histogram's 1 %.
  EXPECT_GT(latency.value(), 0.29);
  EXPECT_LT(latency.value(), 1.0);
  const v1::Alert& throughput = firing["LowThroughput"];
  EXPECT_EQ(throughput.severity(), v1::SEV3);  // severity: warning
  // One client, 300 ms a request: a few requests per second, never 0 (the counter was read).
  EXPECT_GT(throughput.value(), 0.5);
  EXPECT_LT(throughput.value(), 100);
}

}  // namespace
}  // namespace vigil
