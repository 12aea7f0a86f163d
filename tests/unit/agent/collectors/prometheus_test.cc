// The Prometheus text parser on canned text, the conversion of counters, gauges and histograms
// between rounds, and the collector's config.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "agent/collectors/prometheus_collector.h"
#include "agent/collectors/prometheus_text.h"

namespace vigil::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST(PrometheusText, HelpTypeLabelsEscapesAndSpecialValues) {
  const PromParseResult r = ParsePrometheusFamilies(
      "# HELP http_requests_total The total number\\n of \\\\ requests.\n"
      "# TYPE http_requests_total counter\n"
      "http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n"
      "http_requests_total{method=\"post\",code=\"400\",} 3 1395066363000\n"
      "\n"
      "# A comment, not HELP nor TYPE\n"
      "msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find "
      "file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n"
      "metric_without_timestamp_and_labels 12.47\n"
      "something_weird{problem=\"division by zero\"} +Inf -3982045\n"
      "not_a_number NaN\n"
      "negative_infinity -Inf\n"
      "  \tindented_gauge\t 5\r\n");
  EXPECT_EQ(r.summary.error_count, 0u) << r.summary.errors[0].what;
  ASSERT_EQ(r.families.size(), 7u);
  const PromFamily& requests = r.families[0];
  EXPECT_EQ(requests.name, "http_requests_total");
  EXPECT_EQ(requests.type, PromType::kCounter);
  EXPECT_EQ(requests.help, "The total number\n of \\ requests.");
  ASSERT_EQ(requests.samples.size(), 2u);
  EXPECT_THAT(requests.samples[0].labels, ElementsAre(Pair("method", "post"), Pair("code", "200")));
  EXPECT_EQ(requests.samples[0].value, 1027);
  EXPECT_EQ(requests.samples[0].timestamp_ms, 1395066363000);
  EXPECT_THAT(requests.samples[1].labels, ElementsAre(Pair("method", "post"), Pair("code", "400")));
  const PromFamily& msdos = r.families[1];
  EXPECT_EQ(msdos.type, PromType::kUntyped);
  EXPECT_THAT(msdos.samples[0].labels,
              ElementsAre(Pair("path", "C:\\DIR\\FILE.TXT"),
                          Pair("error", "Cannot find file:\n\"FILE.TXT\"")));
  EXPECT_EQ(msdos.samples[0].value, 1.458255915e9);
  EXPECT_FALSE(r.families[2].samples[0].timestamp_ms.has_value());
  EXPECT_TRUE(std::isinf(r.families[3].samples[0].value));
  EXPECT_GT(r.families[3].samples[0].value, 0);
  EXPECT_EQ(r.families[3].samples[0].timestamp_ms, -3982045);
  EXPECT_TRUE(std::isnan(r.families[4].samples[0].value));
  EXPECT_LT(r.families[5].samples[0].value, 0);
  EXPECT_TRUE(std::isinf(r.families[5].samples[0].value));
  EXPECT_EQ(r.families[6].name, "indented_gauge");
  EXPECT_EQ(r.families[6].samples[0].value, 5);
  EXPECT_EQ(r.summary.samples, 8u);
  EXPECT_EQ(r.summary.lines, 12u);
}

TEST(PrometheusText, HistogramAndSummarySamplesJoinTheirFamily) {
  const PromParseResult r = ParsePrometheusFamilies(
      "# TYPE http_request_duration_seconds histogram\n"
      "http_request_duration_seconds_bucket{le=\"0.05\"} 24054\n"
      "http_request_duration_seconds_bucket{le=\"+Inf\"} 144320\n"
      "http_request_duration_seconds_sum 53423\n"
      "http_request_duration_seconds_count 144320\n"
      "# TYPE rpc_duration_seconds summary\n"
      "rpc_duration_seconds{quantile=\"0.5\"} 4773\n"
      "rpc_duration_seconds_sum 1.7560473e+07\n"
      "rpc_duration_seconds_bucket 1\n");
  EXPECT_EQ(r.summary.error_count, 0u);
  ASSERT_EQ(r.families.size(), 3u);
  EXPECT_EQ(r.families[0].name, "http_request_duration_seconds");
  EXPECT_EQ(r.families[0].type, PromType::kHistogram);
  EXPECT_EQ(r.families[0].samples.size(), 4u);
  EXPECT_EQ(r.families[1].name, "rpc_duration_seconds");
  EXPECT_EQ(r.families[1].samples.size(), 2u);
  // A summary has no buckets: x_bucket of a summary is a family of its own, untyped.
  EXPECT_EQ(r.families[2].name, "rpc_duration_seconds_bucket");
  EXPECT_EQ(r.families[2].type, PromType::kUntyped);
}

TEST(PrometheusText, MalformedLinesAreReportedWithTheirNumberAndSkipped) {
  const PromParseResult r = ParsePrometheusFamilies(
      "good 1\n"
      "{le=\"1\"} 2\n"
      "bad_value one\n"
      "bad_label{x=1} 2\n"
      "bad_escape{x=\"a\\tb\"} 2\n"
      "unterminated{x=\"a} 2\n"
      "dup{x=\"a\",x=\"b\"} 2\n"
      "ts 1 12.5\n"
      "trailing 1 2 3\n"
      "# TYPE good gauge\n"
      "# TYPE good counter\n"
      "# TYPE other flavour\n"
      "nospace{}3\n"
      "also_good{a=\"b\"} 2\n");
  ASSERT_EQ(r.summary.error_count, 11u);
  std::vector<size_t> lines;
  for (const PromLineError& e : r.summary.errors) {
    lines.push_back(e.line);
  }
  EXPECT_THAT(lines, ElementsAre(2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13));
  EXPECT_THAT(r.summary.errors[1].what, HasSubstr("'one' is not a number"));
  EXPECT_THAT(r.summary.errors[3].what, HasSubstr("invalid escape sequence"));
  EXPECT_THAT(r.summary.errors[5].what, HasSubstr("label x appears twice"));
  EXPECT_THAT(r.summary.errors[8].what, HasSubstr("second # TYPE line for good"));
  ASSERT_EQ(r.families.size(), 2u);
  EXPECT_EQ(r.families[0].samples.size(), 1u);
  EXPECT_EQ(r.families[1].name, "also_good");
}

TEST(PrometheusText, BoundsOnBytesLinesAndSamples) {
  PromParseLimits limits;
  limits.max_bytes = 12;
  limits.max_line_bytes = 8;
  limits.max_samples = 1;
  PromParseResult r = ParsePrometheusFamilies("a 1\nb 2\nlonger_line 3\nc 4\n", limits);
  ASSERT_EQ(r.families.size(), 1u);  // a; b is past max_samples; the rest past max_bytes
  EXPECT_EQ(r.families[0].name, "a");
  EXPECT_EQ(r.summary.error_count, 2u);
  EXPECT_THAT(r.summary.errors[0].what, HasSubstr("longer than 12 bytes"));
  EXPECT_THAT(r.summary.errors[1].what, HasSubstr("more than 1 samples"));
  limits = PromParseLimits{};
  limits.max_line_bytes = 8;
  r = ParsePrometheusFamilies("a 1\nlonger_line 3\n", limits);
  ASSERT_EQ(r.summary.error_count, 1u);
  EXPECT_EQ(r.summary.errors[0].line, 2u);
}

PromTargetOptions AppTarget() {
  PromTargetOptions t;
  t.name = "app";
  t.url = "http://127.0.0.1:1/metrics";
  auto add = [&t](std::string family, PromType type, std::vector<std::string> labels = {}) {
    PromFamilyRule rule{.family = family, .type = type, .all_labels = labels.empty(),
                        .labels = labels, .metric = "app_" + family};
    t.families.emplace(family, rule);
  };
  add("http_requests_total", PromType::kCounter, {"code"});
  add("queue_depth", PromType::kGauge);
  add("http_request_duration_seconds", PromType::kHistogram);
  add("temperature", PromType::kUntyped);
  return t;
}

const GaugePoint* FindGauge(const Collection& c, absl::string_view name, const Labels& labels) {
  for (const GaugePoint& g : c.gauges) {
    if (g.name == name && g.labels == labels) return &g;
  }
  return nullptr;
}

std::string Scrape(int ok200, int ok500, int slow_bucket_le1, int slow_bucket_le2, int total,
                   double queue) {
  return absl::StrCat(
      "# TYPE http_requests_total counter\n",
      "http_requests_total{code=\"200\",method=\"get\"} ", ok200, "\n",
      "http_requests_total{code=\"200\",method=\"post\"} ", ok200, "\n",
      "http_requests_total{code=\"500\",method=\"get\"} ", ok500, "\n",
      "# TYPE queue_depth gauge\nqueue_depth{queue=\"celery\"} ", queue, "\n",
      "# TYPE http_request_duration_seconds histogram\n",
      "http_request_duration_seconds_bucket{le=\"0.5\"} ", slow_bucket_le1, "\n",
      "http_request_duration_seconds_bucket{le=\"2.5\"} ", slow_bucket_le2, "\n",
      "http_request_duration_seconds_bucket{le=\"+Inf\"} ", total, "\n",
      "http_request_duration_seconds_sum 100\n",
      "http_request_duration_seconds_count ", total, "\n",
      "temperature 21.5\n", "not_listed 7\n");
}

TEST(PrometheusConverter, CountersBecomeRatesGaugesStayHistogramsFromBucketDeltas) {
  const PromTargetOptions target = AppTarget();
  PromTargetConverter converter(&target);
  const absl::Time t0 = absl::FromUnixSeconds(1'000'000);
  Collection first;
  PromRoundStats s = converter.Convert(Scrape(100, 10, 50, 60, 70, 3), t0, first);
  EXPECT_TRUE(s.up);
  EXPECT_EQ(s.parse_errors, 0u);
  // The first round has no rate and no histogram yet; gauges are there at once.
  EXPECT_EQ(FindGauge(first, "app_http_requests_total", {{"code", "200"}, {"target", "app"}}),
            nullptr);
  ASSERT_NE(FindGauge(first, "app_queue_depth", {{"queue", "celery"}, {"target", "app"}}),
            nullptr);
  ASSERT_NE(FindGauge(first, "app_temperature", {{"target", "app"}}), nullptr);
  EXPECT_TRUE(first.histograms.empty());
  for (const GaugePoint& g : first.gauges) {
    EXPECT_NE(g.name, "app_not_listed");
  }

  // 2 s later: +40 requests on each 200 series (summed: method is not kept), +6 on 500; the
  // histogram got 10 fast, 5 medium and 5 beyond its largest bound.
  Collection second;
  s = converter.Convert(Scrape(140, 16, 60, 75, 90, 4), t0 + absl::Seconds(2), second);
  const GaugePoint* ok = FindGauge(second, "app_http_requests_total", {{"code", "200"}, {"target", "app"}});
  ASSERT_NE(ok, nullptr);
  EXPECT_DOUBLE_EQ(ok->value, 40.0);  // (280 - 200) / 2 s
  const GaugePoint* errors =
      FindGauge(second, "app_http_requests_total", {{"code", "500"}, {"target", "app"}});
  ASSERT_NE(errors, nullptr);
  EXPECT_DOUBLE_EQ(errors->value, 3.0);
  EXPECT_EQ(FindGauge(second, "app_queue_depth", {{"queue", "celery"}, {"target", "app"}})->value,
            4);
  ASSERT_EQ(second.histograms.size(), 1u);
  const LogHistogram& h = second.histograms[0].histogram;
  EXPECT_EQ(second.histograms[0].name, "app_http_request_duration_seconds");
  EXPECT_EQ(h.count(), 20u);
  // Half the observations are in the first bucket: the median reads its bound (0.5, within
  // LogHistogram's 1 %); p95 lies in +Inf, placed at the largest finite bound 2.5.
  EXPECT_NEAR(h.Quantile(0.5), 0.5, 0.5 * 0.01);
  EXPECT_NEAR(h.Quantile(0.7), 2.5, 2.5 * 0.01);
  EXPECT_NEAR(h.Quantile(0.95), 2.5, 2.5 * 0.01);

  // A restart: counters and buckets go down; no rate and no histogram this round, and the
  // next round is measured from the new values.
  Collection third;
  converter.Convert(Scrape(5, 1, 2, 3, 4, 4), t0 + absl::Seconds(3), third);
  EXPECT_EQ(FindGauge(third, "app_http_requests_total", {{"code", "200"}, {"target", "app"}}),
            nullptr);
  EXPECT_TRUE(third.histograms.empty());
  Collection fourth;
  converter.Convert(Scrape(15, 1, 2, 3, 4, 4), t0 + absl::Seconds(4), fourth);
  ok = FindGauge(fourth, "app_http_requests_total", {{"code", "200"}, {"target", "app"}});
  ASSERT_NE(ok, nullptr);
  EXPECT_DOUBLE_EQ(ok->value, 20.0);
  EXPECT_TRUE(fourth.histograms.empty());  // no new observation: nothing to send
}

TEST(PrometheusConverter, TypeMismatchSeriesCapAndLabelBounds) {
  PromTargetOptions target = AppTarget();
  target.max_series = 2;
  PromTargetConverter converter(&target);
  Collection out;
  const std::string text =
      "# TYPE queue_depth histogram\n"
      "queue_depth_bucket{le=\"1\"} 1\n"
      "temperature{room=\"a\"} 1\ntemperature{room=\"b\"} 2\ntemperature{room=\"c\"} 3\n"
      "http_requests_total{code=\"" + std::string(600, 'x') + "\"} 1\n";
  PromRoundStats s = converter.Convert(text, absl::FromUnixSeconds(1), out);
  EXPECT_THAT(s.mismatched, ElementsAre("queue_depth"));
  EXPECT_EQ(s.series, 2u);
  EXPECT_EQ(s.dropped, 2u);  // the 600-byte label value, and the third room over the cap
  EXPECT_EQ(out.gauges.size(), 2u);

  // Not an exposition at all: down, with the first malformed line.
  Collection html;
  s = converter.Convert("<html>\n<body>Not Found</body>\n", absl::FromUnixSeconds(2), html);
  EXPECT_FALSE(s.up);
  EXPECT_EQ(s.parse_errors, 2u);
  EXPECT_THAT(s.error, HasSubstr("2 malformed line(s); line 1: expected a metric name"));
}

TEST(PrometheusCollectorConfig, DeclaresItsFamiliesAndRefusesReservedNames) {
  YAML::Node config = YAML::Load(R"(
targets:
  - name: app
    url: http://127.0.0.1:8000/metrics
    prefix: app_
    series:
      http_request_duration_seconds: histogram
      http_requests_total: {type: counter, labels: [code]}
      celery_queue_length: gauge
)");
  auto collector = NewPrometheusCollector(config, "agent.yaml");
  ASSERT_TRUE(collector.ok()) << collector.status();
  std::vector<v1::MetricDeclaration> declared = (*collector)->DeclaredMetrics();
  ASSERT_EQ(declared.size(), 3u);
  EXPECT_EQ(declared[0].name(), "app_celery_queue_length");
  EXPECT_EQ(declared[1].name(), "app_http_request_duration_seconds");
  EXPECT_EQ(declared[1].kind(), v1::MetricDeclaration::HISTOGRAM);
  EXPECT_EQ(declared[1].unit(), "s");
  EXPECT_EQ(declared[2].name(), "app_http_requests_total");
  EXPECT_TRUE(declared[2].per_second_rate());
  EXPECT_EQ(declared[2].unit(), "1/s");
  EXPECT_EQ(declared[2].collector(), "prometheus");

  config = YAML::Load(R"(
targets:
  - name: pg
    url: http://127.0.0.1:9187/metrics
    series:
      pg_stat_database_xact_commit: counter
)");
  EXPECT_THAT(std::string(NewPrometheusCollector(config, "agent.yaml").status().message()),
              HasSubstr("agent.yaml:6: collectors.prometheus.targets[0].series."
                        "pg_stat_database_xact_commit: gives 'pg_stat_database_xact_commit', "
                        "under 'pg_' which belongs to a built-in collector"));
  config = YAML::Load(R"(
targets:
  - name: app
    url: ftp://example/metrics
    series: {x: gauge}
)");
  EXPECT_THAT(std::string(NewPrometheusCollector(config, "agent.yaml").status().message()),
              HasSubstr("agent.yaml:4: collectors.prometheus.targets[0].url"));
  config = YAML::Load(R"(
targets:
  - name: app
    url: http://127.0.0.1/metrics
    series: {x: summary}
)");
  EXPECT_THAT(std::string(NewPrometheusCollector(config, "agent.yaml").status().message()),
              HasSubstr("type 'summary' must be counter, gauge, histogram or untyped"));
}

}  // namespace
}  // namespace vigil::agent
