// `vigil-controller check-rules` on Prometheus rule files, with the real binary: the performance
// runbook's snippet as written there, and unsupported PromQL named at file:line:column.
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/match.h"
#include "tests/support/process.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;

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

}  // namespace
}  // namespace vigil
