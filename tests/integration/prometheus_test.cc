// The prometheus collector against real /metrics endpoints: Alertmanager's and Prometheus' own
// (the Debian packages), the controller's own, and an application histogram served on loopback
// that flows agent -> controller -> rule `p95(app_http_request_duration_seconds) > 2`, which
// fires.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/collectors/prometheus_collector.h"
#include "agent/collectors/prometheus_text.h"
#include "common/http/http_client.h"
#include "common/http/http_server.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using agent::Collection;
using agent::Collector;
using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;
using testing::Subprocess;
using testing::WaitUntil;

const agent::GaugePoint* FindGauge(const Collection& c, absl::string_view name,
                                   const agent::Labels& subset = {}) {
  for (const agent::GaugePoint& g : c.gauges) {
    if (g.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : subset) {
      auto it = g.labels.find(k);
      match = match && it != g.labels.end() && it->second == v;
    }
    if (match) return &g;
  }
  return nullptr;
}

std::unique_ptr<Collector> MakeCollector(const std::string& yaml) {
  auto collector = agent::NewPrometheusCollector(YAML::Load(yaml), "agent.yaml");
  EXPECT_TRUE(collector.ok()) << collector.status();
  return collector.ok() ? std::move(*collector) : nullptr;
}

// Starts a Prometheus-family server (`argv`, listening on `port`) and waits until it is ready;
// null (with the failure recorded) when it does not get there.
std::unique_ptr<Subprocess> StartReady(std::vector<std::string> argv, uint16_t port,
                                       const std::string& log, absl::Duration patience) {
  const std::string name = argv.front();
  auto server = std::make_unique<Subprocess>(std::move(argv),
                                             std::map<std::string, std::string>{}, log);
  if (!WaitUntil([&] { return testing::HttpGet(port, "/-/ready", absl::Seconds(1)) == 200; },
                 patience)) {
    ADD_FAILURE() << name << " not ready: " << server->Output();
    return nullptr;
  }
  return server;
}

// The whole exposition a real server sends on `url` parses without a single error.
void ExpectWholeExpositionParses(const std::string& url, size_t min_families) {
  absl::StatusOr<http::HttpClientResponse> raw = http::HttpGet(url);
  ASSERT_TRUE(raw.ok()) << raw.status();
  const agent::PromParseResult parsed = agent::ParsePrometheusFamilies(raw->body);
  EXPECT_EQ(parsed.summary.error_count, 0u)
      << "line " << parsed.summary.errors[0].line << ": " << parsed.summary.errors[0].what;
  EXPECT_GT(parsed.families.size(), min_families);
}

TEST(PrometheusScrape, AlertmanagersOwnMetrics) {
  testing::TempDir dir;
  const uint16_t port = testing::FreeLoopbackPort();
  testing::WriteFile(dir.File("am.yml"), "route: {receiver: none}\nreceivers: [{name: none}]\n");
  std::unique_ptr<Subprocess> am =
      StartReady({"prometheus-alertmanager", "--config.file=" + dir.File("am.yml"),
                  "--storage.path=" + dir.File("am"),
                  absl::StrCat("--web.listen-address=127.0.0.1:", port), "--cluster.listen-address="},
                 port, dir.File("am.log"), absl::Seconds(15));
  ASSERT_NE(am, nullptr);
  const std::string url = absl::StrCat("http://127.0.0.1:", port, "/metrics");
  ExpectWholeExpositionParses(url, 30);

  std::unique_ptr<Collector> collector = MakeCollector(absl::StrCat(R"(
targets:
  - name: alertmanager
    url: )", url, R"(
    timeout: 2s
    prefix: am_
    series:
      alertmanager_http_request_duration_seconds: {type: histogram, labels: [handler]}
      go_goroutines: gauge
      process_cpu_seconds_total: counter
      alertmanager_alerts: gauge
      go_gc_duration_seconds: gauge
)"));
  ASSERT_NE(collector, nullptr);
  const absl::Time t0 = absl::Now();
  Collection first;
  collector->Collect(t0, first);
  ASSERT_NE(FindGauge(first, "prometheus_up", {{"target", "alertmanager"}}), nullptr);
  EXPECT_EQ(FindGauge(first, "prometheus_up", {{"target", "alertmanager"}})->value, 1);
  const agent::GaugePoint* goroutines = FindGauge(first, "am_go_goroutines");
  ASSERT_NE(goroutines, nullptr);
  EXPECT_GT(goroutines->value, 0);
  EXPECT_EQ(goroutines->labels.at("target"), "alertmanager");
  EXPECT_NE(FindGauge(first, "am_alertmanager_alerts", {{"state", "active"}}), nullptr);
  EXPECT_EQ(FindGauge(first, "am_process_cpu_seconds_total"), nullptr);  // no rate yet

  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(testing::HttpGet(port, "/-/ready"), 200);
  }
  Collection second;
  collector->Collect(t0 + absl::Seconds(1), second);
  const agent::GaugePoint* cpu = FindGauge(second, "am_process_cpu_seconds_total");
  ASSERT_NE(cpu, nullptr);
  EXPECT_GE(cpu->value, 0);
  EXPECT_LT(cpu->value, 2.5);  // seconds of CPU per second: at most the cores
  const agent::HistogramPoint* ready = nullptr;
  for (const agent::HistogramPoint& h : second.histograms) {
    if (h.name == "am_alertmanager_http_request_duration_seconds" &&
        h.labels.at("handler") == "/-/ready") {
      ready = &h;
    }
  }
  ASSERT_NE(ready, nullptr);
  EXPECT_EQ(ready->histogram.count(), 5u);
  EXPECT_EQ(ready->labels.count("method"), 0u);  // not in the label allow-list
  // Loopback answers fall in the first bucket (le 0.05 in Alertmanager's default buckets):
  // the quantile reads that bound, within LogHistogram's 1 %.
  EXPECT_NEAR(ready->histogram.Quantile(0.95), 0.05, 0.05 * 0.01);

  std::vector<v1::DiagnosticTable> tables = collector->Diagnose(t0, {"prometheus_targets"});
  ASSERT_EQ(tables.size(), 1u);
  ASSERT_EQ(tables[0].rows_size(), 1);
  const auto& row = tables[0].rows(0);
  EXPECT_EQ(row.cells(2), "1");                       // up
  EXPECT_EQ(row.cells(8), "0");                       // parse errors
  EXPECT_EQ(row.cells(9), "go_gc_duration_seconds");  // a summary, not a gauge: left out
  EXPECT_EQ(FindGauge(second, "am_go_gc_duration_seconds"), nullptr);

  // Down: up 0 and the reason in the diagnostic.
  am.reset();
  Collection third;
  collector->Collect(t0 + absl::Seconds(2), third);
  EXPECT_EQ(FindGauge(third, "prometheus_up", {{"target", "alertmanager"}})->value, 0);
  tables = collector->Diagnose(t0, {"prometheus_targets"});
  EXPECT_EQ(tables[0].rows(0).cells(2), "0");
  EXPECT_FALSE(tables[0].rows(0).cells(10).empty());
}

// Prometheus' own /metrics (the Debian package): the whole exposition parses, a counter of its
// HTTP requests becomes a per-second rate and its request-duration histogram a Vigil histogram.
TEST(PrometheusScrape, PrometheusOwnMetrics) {
  testing::TempDir dir;
  const uint16_t port = testing::FreeLoopbackPort();
  testing::WriteFile(dir.File("prometheus.yml"), "global: {scrape_interval: 1m}\n");
  std::unique_ptr<Subprocess> prometheus =
      StartReady({"prometheus", "--config.file=" + dir.File("prometheus.yml"),
                  "--storage.tsdb.path=" + dir.File("tsdb"),
                  absl::StrCat("--web.listen-address=127.0.0.1:", port)},
                 port, dir.File("prometheus.log"), absl::Seconds(30));
  ASSERT_NE(prometheus, nullptr);
  const std::string url = absl::StrCat("http://127.0.0.1:", port, "/metrics");
  ExpectWholeExpositionParses(url, 50);

  std::unique_ptr<Collector> collector = MakeCollector(absl::StrCat(R"(
targets:
  - name: prometheus
    url: )", url, R"(
    timeout: 2s
    prefix: prom_
    series:
      prometheus_http_requests_total: {type: counter, labels: [handler, code]}
      prometheus_http_request_duration_seconds: {type: histogram, labels: [handler]}
      prometheus_tsdb_head_series: gauge
)"));
  ASSERT_NE(collector, nullptr);
  const absl::Time t0 = absl::Now();
  Collection first;
  collector->Collect(t0, first);
  ASSERT_NE(FindGauge(first, "prometheus_up", {{"target", "prometheus"}}), nullptr);
  EXPECT_EQ(FindGauge(first, "prometheus_up", {{"target", "prometheus"}})->value, 1);
  EXPECT_NE(FindGauge(first, "prom_prometheus_tsdb_head_series"), nullptr);

  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(testing::HttpGet(port, "/-/ready"), 200);
  }
  Collection second;
  collector->Collect(t0 + absl::Seconds(2), second);
  // Ten readiness requests over two seconds: five per second.
  const agent::GaugePoint* ready_rate = FindGauge(
      second, "prom_prometheus_http_requests_total", {{"handler", "/-/ready"}, {"code", "200"}});
  ASSERT_NE(ready_rate, nullptr);
  EXPECT_DOUBLE_EQ(ready_rate->value, 5.0);
  const agent::HistogramPoint* ready = nullptr;
  for (const agent::HistogramPoint& h : second.histograms) {
    if (h.name == "prom_prometheus_http_request_duration_seconds" &&
        h.labels.at("handler") == "/-/ready") {
      ready = &h;
    }
  }
  ASSERT_NE(ready, nullptr);
  EXPECT_EQ(ready->histogram.count(), 10u);
}

// An application's own latency histogram, served on loopback: every request to /metrics adds
// 20 observations, all between 2.5 s and 5 s.
class SlowApp {
 public:
  SlowApp() {
    server_.Handle("GET", "/metrics", [this](const http::HttpRequest&) {
      const int n = 20 * ++scrapes_;
      http::HttpResponse r;
      r.content_type = "text/plain; version=0.0.4";
      r.body = absl::StrCat(
          "# HELP http_request_duration_seconds Request latency.\n"
          "# TYPE http_request_duration_seconds histogram\n",
          "http_request_duration_seconds_bucket{handler=\"/api\",le=\"0.5\"} 0\n",
          "http_request_duration_seconds_bucket{handler=\"/api\",le=\"2.5\"} 0\n",
          "http_request_duration_seconds_bucket{handler=\"/api\",le=\"5\"} ", n, "\n",
          "http_request_duration_seconds_bucket{handler=\"/api\",le=\"+Inf\"} ", n, "\n",
          "http_request_duration_seconds_sum{handler=\"/api\"} ", 4 * n, "\n",
          "http_request_duration_seconds_count{handler=\"/api\"} ", n, "\n");
      return r;
    });
    ok_ = server_.Start("127.0.0.1:0").ok();
  }
  bool ok() const { return ok_; }
  int port() const { return server_.port(); }

 private:
  http::HttpServer server_;
  std::atomic<int> scrapes_{0};
  bool ok_ = false;
};

class PrometheusEndToEnd : public ::testing::Test {
 protected:
  PrometheusEndToEnd()
      : port_(testing::FreeLoopbackPort()),
        http_port_(testing::FreeLoopbackPort()),
        address_(absl::StrCat("127.0.0.1:", port_)) {}

  CommandResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(),
                {BinaryPath("vigil"), "--controller=" + address_, "--insecure", "--token=" + token_});
    return RunCommand(args, absl::Seconds(15));
  }

  testing::TempDir dir_;
  const uint16_t port_;
  const uint16_t http_port_;
  const std::string address_;
  std::string token_;
};

TEST_F(PrometheusEndToEnd, AppHistogramFiresARuleAndTheControllersOwnMetricsScrape) {
  SlowApp app;
  ASSERT_TRUE(app.ok());
  testing::WriteFile(dir_.File("rules.yaml"), R"(rules:
  - alert: AppSlow
    expr: p95(app_http_request_duration_seconds) > 2
    window: 30s
    severity: SEV2
  - alert: NobodyDeclaresThis
    expr: app_never_declared > 1
  - alert: ControllerIngests
    expr: rate(ctl_vigil_samples_ingested_total[1m]) > 0
  - alert: GaugeUnderRate
    expr: rate(ctl_vigil_agents_connected[1m]) > 0
)");
  // check-rules accepts the scraped metrics and says so.
  CommandResult check = RunCommand(
      {BinaryPath("vigil-controller"), "check-rules", dir_.File("rules.yaml")}, absl::Seconds(10));
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_TRUE(absl::StrContains(check.stdout_text,
                                "rule AppSlow: metric 'app_http_request_duration_seconds' is "
                                "scraped (declared by agents), not in the built-in schema; used "
                                "as a histogram"))
      << check.output;
  EXPECT_TRUE(absl::StrContains(check.stdout_text,
                                "rule ControllerIngests: metric 'ctl_vigil_samples_ingested_total' "
                                "is scraped (declared by agents), not in the built-in schema; used "
                                "as a per-second rate (a counter)"))
      << check.output;
  EXPECT_TRUE(absl::StrContains(check.stdout_text, "4 rule(s), OK")) << check.output;

  testing::WriteFile(dir_.File("agent.yaml"), absl::StrCat(R"(collectors:
  prometheus:
    targets:
      - name: app
        url: http://127.0.0.1:)", app.port(), R"(/metrics
        prefix: app_
        series:
          http_request_duration_seconds: histogram
      - name: controller
        url: http://127.0.0.1:)", http_port_, R"(/metrics
        prefix: ctl_
        series:
          vigil_agents_connected: gauge
          vigil_declared_metrics: gauge
          vigil_samples_ingested_total: counter
)"));
  token_ = testing::AddVigilUser(dir_.File("data/vigil.db"), "tester", "viewer");
  Subprocess controller(
      {BinaryPath("vigil-controller"), "--listen=" + address_, "--db=" + dir_.File("data/vigil.db"),
       "--insecure", absl::StrCat("--http-listen=127.0.0.1:", http_port_),
       "--rules=" + dir_.File("rules.yaml")},
      {}, dir_.File("controller.log"));
  ASSERT_TRUE(WaitUntil([&] { return Cli({"agents"}).exit_code == 0; }, absl::Seconds(10)))
      << controller.Output();
  Subprocess agent({BinaryPath("vigil-agent"), "--controller=" + address_,
                    "--config=" + dir_.File("agent.yaml"), "--id=web-1", "--insecure",
                    "--interval=1s"},
                   {}, dir_.File("agent.log"));

  // The rule fires on the application's own histogram.
  ASSERT_TRUE(WaitUntil(
      [&] {
        CommandResult alerts = Cli({"alerts"});
        return absl::StrContains(alerts.stdout_text, "AppSlow") &&
               absl::StrContains(alerts.stdout_text, "firing");
      },
      absl::Seconds(20)))
      << Cli({"alerts"}).output << agent.Output() << controller.Output();

  // vigil metrics shows the scraped values and what the agent declared.
  CommandResult metrics = Cli({"metrics", "web-1"});
  EXPECT_EQ(metrics.exit_code, 0) << metrics.output;
  EXPECT_TRUE(absl::StrContains(metrics.stdout_text, "declared (scraped) metrics"))
      << metrics.stdout_text;
  EXPECT_TRUE(absl::StrContains(metrics.stdout_text, "app_http_request_duration_seconds"));
  EXPECT_TRUE(absl::StrContains(metrics.stdout_text, "gauge (rate/s)")) << metrics.stdout_text;
  CommandResult json = Cli({"metrics", "web-1", "--prefix=app_", "-o", "json"});
  v1::GetMetricsResponse response;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.stdout_text, &response).ok())
      << json.output;
  ASSERT_EQ(response.declared_size(), 1);
  EXPECT_EQ(response.declared(0).kind(), v1::MetricDeclaration::HISTOGRAM);
  ASSERT_GE(response.metrics_size(), 1);
  EXPECT_TRUE(response.metrics(0).is_histogram());
  EXPECT_NEAR(response.metrics(0).p95(), 5, 5 * 0.01);  // the bucket's upper bound

  // The controller's own /metrics, scraped by the agent: it counts this agent and the four
  // metrics the agent declared.
  ASSERT_TRUE(WaitUntil(
      [&] {
        CommandResult ctl = Cli({"metrics", "web-1", "--prefix=ctl_", "-o", "json"});
        v1::GetMetricsResponse r;
        if (!google::protobuf::util::JsonStringToMessage(ctl.stdout_text, &r).ok()) return false;
        bool connected = false, declared = false;
        for (const v1::MetricValue& m : r.metrics()) {
          connected |= m.name() == "ctl_vigil_agents_connected" && m.value() == 1;
          declared |= m.name() == "ctl_vigil_declared_metrics" && m.value() == 4;
        }
        return connected && declared;
      },
      absl::Seconds(20)))
      << Cli({"metrics", "web-1", "--prefix=ctl_"}).output;

  // rate() over a scraped counter (declared a per-second rate) fires; over a scraped gauge that
  // is not a rate it never does, though the gauge's value (1) meets the condition.
  ASSERT_TRUE(WaitUntil(
      [&] {
        CommandResult alerts = Cli({"alerts"});
        return absl::StrContains(alerts.stdout_text, "ControllerIngests") &&
               absl::StrContains(alerts.stdout_text, "firing");
      },
      absl::Seconds(20)))
      << Cli({"alerts"}).output << controller.Output();
  EXPECT_FALSE(absl::StrContains(Cli({"alerts"}).stdout_text, "GaugeUnderRate"));
}

}  // namespace
}  // namespace vigil
