// A real Prometheus scrapes the controller's fleet page (/fleet/metrics, bearer token) while an
// agent tails a real nginx's access log: the fleet-wide p95 PromQL computes from the exposed
// buckets lands in the bucket that holds Vigil's own p95 of the same traffic, and the agent's
// gauges arrive with its labels. Without the token the page is refused.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "agent/collectors/log_format.h"
#include "common/http/http_client.h"
#include "controller/ingest/cumulative_histogram.h"
#include "tests/support/servers.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::WaitUntil;

// The number promtool prints for a one-element answer ("{...} => 0.325 @[...]"); NaN when the
// answer is empty or not a number.
double PromtoolValue(const std::string& output) {
  const size_t arrow = output.find("=> ");
  if (arrow == std::string::npos) {
    return std::nan("");
  }
  absl::string_view rest = absl::string_view(output).substr(arrow + 3);
  rest = rest.substr(0, rest.find(' '));
  double value = 0;
  return absl::SimpleAtod(rest, &value) ? value : std::nan("");
}

TEST(FleetPrometheus, PrometheusQuantileMatchesVigilsWithinTheBucket) {
  testing::TempDir dir;
  testing::HttpUpstream upstream;
  // Nine requests in ten at 50 ms, one at 300 ms: the p95 is a slow one, in the middle of the
  // slow tenth, and (0.25, 0.4] holds it whatever the machine's load adds to either.
  upstream.SetRoute("/fast", absl::Milliseconds(50), 200);
  upstream.SetRoute("/slow", absl::Milliseconds(300), 200);
  testing::NginxServer nginx(dir.path(), upstream.port());
  ASSERT_TRUE(nginx.ok());

  const std::string token = "fleet-scrape-token-0123456789";
  testing::WriteFile(dir.File("fleet.token"), token + "\n");
  const std::string address = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
  const uint16_t http_port = testing::FreeLoopbackPort();
  testing::WriteFile(
      dir.File("agent.yaml"),
      absl::StrCat("id: web-1\nlabels: {role: api, service: rag-api}\n",
                   "collectors:\n  host: {}\n", "  nginx: {access_log: '", nginx.access_log(),
                   "', log_format: '", agent::LogFormat::kTimedCombined,
                   " $upstream_response_time'}\n", "spool_dir: ", dir.File("web-1.spool"), "\n"));
  const std::string viewer = testing::AddVigilUser(dir.File("vigil.db"), "tester", "viewer");
  testing::Subprocess controller({BinaryPath("vigil-controller"), "--listen=" + address,
                                  "--db=" + dir.File("vigil.db"), "--insecure",
                                  absl::StrCat("--http-listen=127.0.0.1:", http_port),
                                  "--fleet-metrics-token-file=" + dir.File("fleet.token")});
  testing::Subprocess agent({BinaryPath("vigil-agent"), "--controller=" + address,
                             "--config=" + dir.File("agent.yaml"), "--insecure"});
  std::atomic<bool> traffic{true};
  std::thread load([&] {
    for (int i = 0; traffic; ++i) {
      testing::HttpGet(nginx.port(), i % 10 == 9 ? "/slow" : "/fast");
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

  // The page wants the token, and says nothing more without it.
  const std::string url = absl::StrCat("http://127.0.0.1:", http_port, "/fleet/metrics");
  ASSERT_TRUE(WaitUntil([&] { return http::HttpGet(url).ok(); }, absl::Seconds(15)))
      << controller.Output();
  absl::StatusOr<http::HttpClientResponse> refused = http::HttpGet(url);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(refused->status, 401);
  EXPECT_EQ(refused->body, "unauthorized\n");
  http::HttpClientOptions wrong;
  wrong.headers = {{"Authorization", "Bearer " + token + "x"}};
  EXPECT_EQ(http::HttpGet(url, wrong)->status, 401);
  http::HttpClientOptions right;
  right.headers = {{"Authorization", "Bearer " + token}};
  std::string page;
  ASSERT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<http::HttpClientResponse> r = http::HttpGet(url, right);
        page = r.ok() ? r->body : r.status().ToString();
        return r.ok() && r->status == 200 &&
               page.find("nginx_request_duration_seconds_count{") != std::string::npos;
      },
      absl::Seconds(20), absl::Milliseconds(250)))
      << page << agent.Output();
  EXPECT_NE(page.find("# TYPE nginx_request_duration_seconds histogram\n"), std::string::npos);
  EXPECT_NE(page.find("# TYPE nginx_requests_per_second gauge\n"), std::string::npos);

  // Prometheus, scraping every second with the token.
  const uint16_t prom_port = testing::FreeLoopbackPort();
  testing::WriteFile(
      dir.File("prometheus.yml"),
      absl::StrCat("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                   "scrape_configs:\n"
                   "  - job_name: vigil-fleet\n"
                   "    metrics_path: /fleet/metrics\n"
                   "    authorization: {credentials_file: '",
                   dir.File("fleet.token"), "'}\n",
                   "    static_configs: [{targets: ['127.0.0.1:", http_port, "']}]\n"));
  testing::Subprocess prometheus(
      {"/usr/bin/prometheus", "--config.file=" + dir.File("prometheus.yml"),
       "--storage.tsdb.path=" + dir.File("prometheus-data"),
       absl::StrCat("--web.listen-address=127.0.0.1:", prom_port)},
      {}, dir.File("prometheus.log"));
  const std::string prom = absl::StrCat("http://127.0.0.1:", prom_port);
  auto promql = [&](const std::string& query) {
    return testing::RunCommand({"/usr/bin/promtool", "query", "instant", prom, query},
                               absl::Seconds(10))
        .output;
  };
  const std::string p95_query =
      "histogram_quantile(0.95, sum by (le) "
      "(rate(nginx_request_duration_seconds_bucket[1m])))";
  std::string answer;
  // A rate wants two scrapes; a few more so both sides see a settled mix.
  ASSERT_TRUE(WaitUntil(
      [&] {
        answer = promql(
            "count_over_time(up{job=\"vigil-fleet\"}[1m]) >= 5 and "
            "up{job=\"vigil-fleet\"} == 1");
        return !std::isnan(PromtoolValue(answer));
      },
      absl::Seconds(30), absl::Milliseconds(500)))
      << answer << prometheus.Output();
  answer = promql(p95_query);
  const double prom_p95 = PromtoolValue(answer);

  auto r = testing::RunCommand({BinaryPath("vigil"), "--controller=" + address, "--insecure",
                                "--token=" + viewer, "metrics", "web-1", "-o", "json"},
                               absl::Seconds(30), testing::CleanVigilEnvironment());
  v1::GetMetricsResponse metrics;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.stdout_text, &metrics).ok())
      << r.output;
  double vigil_p95 = std::nan("");
  for (const v1::MetricValue& m : metrics.metrics()) {
    if (m.name() == "nginx_request_duration_seconds") {
      vigil_p95 = m.p95();
    }
  }
  // Tolerance: the bucket of the fixed `le` list that holds Vigil's figure, (lo, hi] with
  // hi <= 1.6 lo, widened by Vigil's 1 % at its edges: histogram_quantile interpolates inside it.
  const auto& bounds = controller::CumulativeHistogram::Bounds();
  const size_t j =
      controller::CumulativeHistogram::CoarseBucket(LogHistogram::BucketIndex(vigil_p95));
  ASSERT_GT(j, 0u) << vigil_p95;
  ASSERT_LT(j, bounds.size()) << vigil_p95;
  const double lo = bounds[j - 1], hi = bounds[j];
  EXPECT_GE(prom_p95, lo / 1.01) << answer << " Vigil's p95 " << vigil_p95;
  EXPECT_LE(prom_p95, hi * 1.01) << answer << " Vigil's p95 " << vigil_p95;
  EXPECT_GT(vigil_p95, 0.25) << "the slow tenth sets the p95";
  std::printf("p95: Vigil %.4f s, Prometheus %.4f s, bucket (%g, %g]\n", vigil_p95, prom_p95, lo,
              hi);

  // A gauge, with the agent and its labels.
  answer = promql("host_cpu_usage_ratio{agent=\"web-1\",role=\"api\",service=\"rag-api\"}");
  EXPECT_NE(answer.find("agent=\"web-1\""), std::string::npos) << answer;
  EXPECT_FALSE(std::isnan(PromtoolValue(answer))) << answer;
  EXPECT_EQ(prometheus.Stop(), 0) << prometheus.Output();
}

}  // namespace
}  // namespace vigil
