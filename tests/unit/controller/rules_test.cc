// Rule files, the expression language, and the engine with a simulated clock.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/histogram.h"
#include "common/metric_schema.h"
#include "controller/rules/rate_window.h"
#include "controller/rules/rule.h"
#include "controller/rules/rule_engine.h"
#include "tests/support/hostile_yaml.h"
#include "tests/support/process.h"

namespace vigil::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// ---- parsing ----

TEST(RuleParse, DefaultRulesParse) {
  RuleFile file = ParseRules(DefaultRulesYaml(), "defaults");
  EXPECT_THAT(file.errors, SizeIs(0));
  std::vector<std::string> names;
  for (const Rule& r : file.rules) {
    names.push_back(r.name);
  }
  EXPECT_THAT(names,
              ::testing::IsSupersetOf({"HighAPILatency", "HighErrorRate", "HighMemoryUsage",
                                       "DiskSpaceWarning", "HighCPU", "DBConnectionsExhausted",
                                       "SlowQueries", "LowCacheHitRatio", "LowThroughput"}));
  const Rule& latency = file.rules[0];
  EXPECT_EQ(latency.expr.quantile, 0.95);
  EXPECT_EQ(latency.for_duration, absl::Minutes(5));
  EXPECT_EQ(latency.severity, v1::SEV2);
  // LowThroughput is the runbook's: the fleet's sum of 5-minute mean request rates.
  for (const Rule& r : file.rules) {
    if (r.name == "LowThroughput") {
      EXPECT_EQ(r.expr.aggregation, Aggregation::kSum);
      EXPECT_EQ(r.expr.range_function, RangeFunction::kRate);
      EXPECT_EQ(r.expr.range, absl::Minutes(5));
      EXPECT_EQ(r.expr.metric, "nginx_requests_per_second");
    }
  }
}

TEST(RuleParse, ExpressionForms) {
  auto e = ParseExpression(
      R"(max by (service) (p99(nginx_request_duration_seconds{role="api"})) >= 1.5)");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->aggregation, Aggregation::kMax);
  EXPECT_THAT(e->by, ElementsAre("service"));
  EXPECT_EQ(e->quantile, 0.99);
  EXPECT_EQ(e->metric, "nginx_request_duration_seconds");
  ASSERT_THAT(e->matchers, SizeIs(1));
  EXPECT_EQ(e->matchers[0].label, "role");
  EXPECT_EQ(e->op, Comparison::kGreaterEqual);
  EXPECT_EQ(e->threshold, 1.5);

  auto trailing_by = ParseExpression(R"(sum(nginx_requests_per_second) by (env) < 100)");
  ASSERT_TRUE(trailing_by.ok()) << trailing_by.status();
  EXPECT_EQ(trailing_by->aggregation, Aggregation::kSum);
  EXPECT_THAT(trailing_by->by, ElementsAre("env"));

  auto regex = ParseExpression(R"(host_disk_used_ratio{mount=~"/var.*",env!="dev"} > 0.8)");
  ASSERT_TRUE(regex.ok()) << regex.status();
  EXPECT_TRUE(regex->matchers[0].Matches("/var/lib"));
  EXPECT_FALSE(regex->matchers[0].Matches("/"));
  EXPECT_TRUE(regex->matchers[1].Matches("prod"));
}

TEST(RuleParse, ExpressionErrorsSayWhatAndWhere) {
  EXPECT_THAT(ParseExpression("nginx_reqs > 1").status().message(),
              HasSubstr("unknown metric 'nginx_reqs'"));
  EXPECT_THAT(ParseExpression("host_cpu_usage_ratio >> 1").status().message(),
              HasSubstr("threshold '>' is not a number"));
  EXPECT_THAT(ParseExpression("host_cpu_usage_ratio ~ 1").status().message(),
              HasSubstr("expected a comparison"));
  EXPECT_THAT(ParseExpression("host_cpu_usage_ratio > lots").status().message(),
              HasSubstr("threshold 'lots' is not a number"));
  EXPECT_THAT(ParseExpression("nginx_request_duration_seconds > 2").status().message(),
              HasSubstr("is a histogram"));
  EXPECT_THAT(ParseExpression("p95(host_cpu_usage_ratio) > 2").status().message(),
              HasSubstr("is a gauge"));
  EXPECT_THAT(ParseExpression(R"(host_load1{role="api" > 2)").status().message(),
              HasSubstr("column"));
  EXPECT_THAT(ParseExpression(R"(host_load1{role=~"(("} > 2)").status().message(),
              HasSubstr("bad regular expression"));
}

TEST(RuleParse, FileErrorsNameFileLineAndProblemEach) {
  const char* kText = R"(rules:
  - alert: A
    expr: host_cpu_usage_ratio > 0.9
  - alert: B
    expr: host_cpu_usage > 1
  - alert: C
    expr: host_cpu_usage_ratio => 1
  - alert: D
    expr: host_cpu_usage_ratio > 1
    for: 5 minutes
  - alert: A
    expr: host_load1 > 4
  - alert: E
    expr: host_load1 > 4
    severity: SEV9
  - alert: F
    expr: host_load1 > 4
    colour: red
)";
  RuleFile file = ParseRules(kText, "team.yaml");
  ASSERT_THAT(file.errors, SizeIs(6));
  EXPECT_THAT(file.errors[0], HasSubstr("team.yaml:5: rule B: expr: unknown metric 'host_cpu_usage': "
                                        "did you mean 'host_cpu_usage_ratio'?"));
  EXPECT_THAT(
      file.errors[1],
      HasSubstr(
          "team.yaml:7: rule C: expr: expected a comparison (>, >=, <, <=, ==, !=), found '=> 1'"));
  EXPECT_THAT(file.errors[2], HasSubstr("team.yaml:10: rule D:"));
  EXPECT_THAT(file.errors[2], HasSubstr("5 minutes"));
  EXPECT_THAT(file.errors[3], HasSubstr("team.yaml:11: rule A: duplicate name (first defined at "
                                        "team.yaml:2)"));
  EXPECT_THAT(file.errors[4], HasSubstr("team.yaml:15: rule E: severity 'SEV9'"));
  EXPECT_THAT(file.errors[5], HasSubstr("team.yaml:18: unknown key 'colour' in rule F"));
  EXPECT_THAT(file.rules, SizeIs(1));
}

// The open name space (DESIGN.md, "Metric names"): a name outside the schema and outside the
// built-in collectors' prefixes is a scraped metric, its kind taken from the expression.
TEST(RuleParse, ScrapedMetricsOutsideTheSchemaTakeTheirKindFromTheExpression) {
  EXPECT_THAT(ReservedMetricPrefixes(), ::testing::IsSupersetOf({"host_", "nginx_", "pg_",
                                                                 "redis_", "prometheus_"}));
  auto histogram = ParseExpression("p95(app_http_request_duration_seconds) > 2");
  ASSERT_TRUE(histogram.ok()) << histogram.status();
  EXPECT_TRUE(histogram->scraped);
  EXPECT_EQ(histogram->quantile, 0.95);
  auto gauge = ParseExpression(R"(max(qdrant_collections_total{collection="docs"}) > 10)");
  ASSERT_TRUE(gauge.ok()) << gauge.status();
  EXPECT_TRUE(gauge->scraped);
  EXPECT_EQ(gauge->quantile, 0);
  EXPECT_FALSE(ParseExpression("host_load1 > 4")->scraped);
  // Under a built-in prefix: a typo, with the nearest name of the schema.
  EXPECT_THAT(ParseExpression("host_lod1 > 4").status().message(),
              HasSubstr("unknown metric 'host_lod1': did you mean 'host_load1'?"));
  EXPECT_THAT(ParseExpression("pg_conections_used_ratio > 0.9").status().message(),
              HasSubstr("did you mean 'pg_connections_used_ratio'?"));
  EXPECT_THAT(ParseExpression("redis_something_else > 1").status().message(),
              HasSubstr("the prefix 'redis_' belongs to a built-in collector"));

  RuleFile file = ParseRules(R"(rules:
  - alert: AppLatency
    expr: p95(app_http_request_duration_seconds) > 2
  - alert: CeleryBacklog
    expr: app_celery_queue_length > 100
  - alert: HighLoad
    expr: host_load1 > 4
)",
                             "app.yaml");
  ASSERT_THAT(file.errors, SizeIs(0));
  ASSERT_THAT(file.notes, SizeIs(2));
  EXPECT_THAT(file.notes[0],
              HasSubstr("app.yaml:2: rule AppLatency: metric 'app_http_request_duration_seconds' "
                        "is scraped (declared by agents), not in the built-in schema; used as a "
                        "histogram"));
  EXPECT_THAT(file.notes[1], HasSubstr("used as a gauge"));

  // Against what agents declare: a kind mismatch never fires; an undeclared metric is named.
  std::vector<v1::MetricDeclaration> declared(1);
  declared[0].set_name("app_celery_queue_length");
  declared[0].set_kind(v1::MetricDeclaration::HISTOGRAM);
  declared[0].set_collector("prometheus");
  EXPECT_THAT(KindMismatches(file.rules, declared),
              ElementsAre(HasSubstr("rule CeleryBacklog (app.yaml:4) uses "
                                    "'app_celery_queue_length' as a gauge but collector "
                                    "'prometheus' declares it a histogram: the rule never fires")));
  EXPECT_THAT(UndeclaredScrapedMetrics(file.rules, declared),
              ElementsAre(HasSubstr("rule AppLatency (app.yaml:2): metric "
                                    "'app_http_request_duration_seconds' is declared by no "
                                    "connected agent")));
  declared[0].set_kind(v1::MetricDeclaration::GAUGE);
  EXPECT_THAT(KindMismatches(file.rules, declared), SizeIs(0));
}

// Hostile rule files give errors naming the file and line; none throws or crashes.
TEST(RuleParse, HostileFilesGiveFileLineErrors) {
  for (const char* key : {"rules", "x"}) {
    for (const testing::HostileYaml& c : testing::HostileYamlCases(key)) {
      SCOPED_TRACE(absl::StrCat(key, ": ", c.name));
      RuleFile file = ParseRules(c.text, "r.yaml");
      EXPECT_THAT(file.rules, SizeIs(0));
      ASSERT_THAT(file.errors, SizeIs(::testing::Ge(1)));
      for (const std::string& error : file.errors) {
        EXPECT_TRUE(testing::OpensWithFileLine(error, "r.yaml", c.has_line)) << error;
      }
    }
  }
  // Inside one rule: the other rules still load.
  RuleFile file = ParseRules(R"(rules:
  - alert: Good
    expr: host_load1 > 4
  - alert: Bad
    ? [a, b]
    : 1
  - &loop
    alert: Loop
    expr: host_load1 > 4
    tiers: [*loop]
  - alert: Huge
    expr: host_load1 > 4
    window: 99999999999999999999h
    tiers: [{threshold: 1e999999, severity: SEV1}]
)",
                             "r.yaml");
  EXPECT_THAT(file.rules, SizeIs(1));
  ASSERT_THAT(file.errors, SizeIs(3));
  EXPECT_THAT(file.errors[0], HasSubstr("r.yaml:5: a key in rule Bad must be a plain name"));
  EXPECT_THAT(file.errors[1], HasSubstr("r.yaml:8: unknown key 'alert' in a tier"));
  EXPECT_THAT(file.errors[2], HasSubstr("r.yaml:13: rule Huge:"));
  testing::TempDir dir;
  RuleFile directory = LoadRuleFile(dir.path());
  ASSERT_THAT(directory.errors, SizeIs(1));
  EXPECT_THAT(directory.errors[0], HasSubstr("is a directory"));
}

TEST(RuleParse, FileLevelErrors) {
  EXPECT_THAT(ParseRules("rules: [", "x.yaml").errors.at(0), HasSubstr("x.yaml:1"));
  // `groups:` is a Prometheus rule file (prometheus_rules_test.cc), not an unknown key.
  EXPECT_THAT(ParseRules("groups: []", "x.yaml").errors, SizeIs(0));
  EXPECT_THAT(ParseRules("rules: []\ngroups: []", "x.yaml").errors.at(0),
              HasSubstr("unknown key 'rules'"));
  EXPECT_THAT(ParseRules("{}", "x.yaml").errors.at(0), HasSubstr("needs a 'rules:' list"));
  EXPECT_THAT(LoadRuleFile("/nonexistent/rules.yaml").errors.at(0),
              HasSubstr("/nonexistent/rules.yaml: cannot read"));
}

TEST(RuleParse, SeverityTiers) {
  RuleFile file = ParseRules(R"(rules:
  - alert: Disk
    expr: host_disk_used_ratio > 0.80
    severity: SEV3
    tiers: [{threshold: 0.95, severity: SEV1}, {threshold: 0.9, severity: SEV2}]
)",
                             "t.yaml");
  ASSERT_THAT(file.errors, SizeIs(0));
  const Rule& r = file.rules[0];
  EXPECT_EQ(r.SeverityFor(0.85), v1::SEV3);
  EXPECT_EQ(r.SeverityFor(0.92), v1::SEV2);
  EXPECT_EQ(r.SeverityFor(0.97), v1::SEV1);

  RuleFile bad = ParseRules(R"(rules:
  - alert: Disk
    expr: host_disk_used_ratio > 0.80
    tiers: [{threshold: 0.5, severity: SEV1}]
)",
                            "t.yaml");
  ASSERT_THAT(bad.errors, SizeIs(1));
  EXPECT_THAT(bad.errors[0], HasSubstr("does not meet the rule's own"));
}

// ---- rate() and irate() ----

TEST(RuleParse, RateAndIrateForms) {
  auto plain = ParseExpression("rate(nginx_requests_per_second[5m]) < 100");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->range_function, RangeFunction::kRate);
  EXPECT_EQ(plain->range, absl::Minutes(5));
  EXPECT_EQ(plain->metric, "nginx_requests_per_second");
  EXPECT_EQ(plain->aggregation, Aggregation::kNone);
  EXPECT_EQ(plain->op, Comparison::kLess);
  EXPECT_FALSE(plain->scraped);

  auto matchers = ParseExpression(R"(rate(app_log_errors_per_second{module="billing"}[90s]) > 1)");
  ASSERT_TRUE(matchers.ok()) << matchers.status();
  EXPECT_EQ(matchers->range, absl::Seconds(90));
  ASSERT_THAT(matchers->matchers, SizeIs(1));
  EXPECT_EQ(matchers->matchers[0].label, "module");

  auto fleet = ParseExpression("sum(rate(nginx_requests_per_second[5m])) < 100");
  ASSERT_TRUE(fleet.ok()) << fleet.status();
  EXPECT_EQ(fleet->aggregation, Aggregation::kSum);
  EXPECT_EQ(fleet->range_function, RangeFunction::kRate);

  auto grouped = ParseExpression("sum by (service) ( rate( redis_ops_per_second [ 1m ] ) ) > 3");
  ASSERT_TRUE(grouped.ok()) << grouped.status();
  EXPECT_THAT(grouped->by, ElementsAre("service"));
  EXPECT_EQ(grouped->range, absl::Minutes(1));

  auto trailing = ParseExpression("max(irate(nginx_requests_per_second[30s])) by (env) > 5");
  ASSERT_TRUE(trailing.ok()) << trailing.status();
  EXPECT_EQ(trailing->range_function, RangeFunction::kIrate);
  EXPECT_THAT(trailing->by, ElementsAre("env"));

  // A scraped counter (declared by agents as a per-second rate).
  auto scraped = ParseExpression("rate(app_http_requests_total[2m]) > 10");
  ASSERT_TRUE(scraped.ok()) << scraped.status();
  EXPECT_TRUE(scraped->scraped);
  EXPECT_EQ(scraped->range_function, RangeFunction::kRate);

  // Every `*_per_second` metric of the schema is a rate, and nothing else is.
  for (const MetricInfo& m : AllMetrics()) {
    EXPECT_EQ(IsPerSecondRate(m), absl::EndsWith(m.name, "_per_second")) << m.name;
  }
  // The maximum range is the limit, inclusive.
  EXPECT_TRUE(ParseExpression("rate(nginx_requests_per_second[5m]) > 1").ok());
  EXPECT_TRUE(ParseExpression("rate(nginx_requests_per_second[300s]) > 1").ok());
  EXPECT_FALSE(ParseExpression("rate(nginx_requests_per_second[301s]) > 1").ok());
}

// Each refusal names the file, the expression's line, the rule and the offending text.
TEST(RuleParse, RateRefusalsNameFileLineAndText) {
  RuleFile file = ParseRules(R"(rules:
  - alert: OnAGauge
    expr: rate(host_cpu_usage_ratio[5m]) > 0.5
  - alert: OnAHistogram
    expr: irate(nginx_request_duration_seconds[1m]) > 1
  - alert: NoRange
    expr: sum(rate(nginx_requests_per_second)) < 100
  - alert: ZeroRange
    expr: rate(nginx_requests_per_second[0s]) < 100
  - alert: NegativeRange
    expr: rate(nginx_requests_per_second[-1m]) < 100
  - alert: TooLong
    expr: sum by (service) (rate(nginx_requests_per_second{role="api"}[10m])) < 100
  - alert: Malformed
    expr: rate(nginx_requests_per_second[5 minutes]) < 100
  - alert: Empty
    expr: rate(nginx_requests_per_second[]) < 100
  - alert: Unterminated
    expr: rate(nginx_requests_per_second[5m < 100
  - alert: Unclosed
    expr: rate(nginx_requests_per_second[5m] < 100
  - alert: Good
    expr: rate(nginx_requests_per_second[5m]) < 100
)",
                             "team.yaml");
  ASSERT_THAT(file.rules, SizeIs(1));
  EXPECT_EQ(file.rules[0].name, "Good");
  ASSERT_THAT(file.errors, SizeIs(10));
  EXPECT_THAT(file.errors[0],
              HasSubstr("team.yaml:3: rule OnAGauge: expr: 'host_cpu_usage_ratio' is a gauge, not "
                        "a per-second rate: rate() applies to the *_per_second metrics and "
                        "scraped counters"));
  EXPECT_THAT(file.errors[1],
              HasSubstr("team.yaml:5: rule OnAHistogram: expr: 'nginx_request_duration_seconds' "
                        "is a histogram: irate() applies to per-second rates; write "
                        "p50/p90/p95/p99(nginx_request_duration_seconds)"));
  EXPECT_THAT(file.errors[2],
              HasSubstr("team.yaml:7: rule NoRange: expr: rate(nginx_requests_per_second) needs "
                        "a range: write rate(nginx_requests_per_second[5m]) (at most 5m)"));
  EXPECT_THAT(file.errors[3], HasSubstr("team.yaml:9: rule ZeroRange: expr: range '0s' of "
                                        "rate(nginx_requests_per_second[0s]) must be more than 0"));
  EXPECT_THAT(file.errors[4],
              HasSubstr("team.yaml:11: rule NegativeRange: expr: range '-1m' of "
                        "rate(nginx_requests_per_second[-1m]) must be more than 0"));
  EXPECT_THAT(file.errors[5],
              HasSubstr("team.yaml:13: rule TooLong: expr: range '10m' of "
                        "rate(nginx_requests_per_second{role=\"api\"}[10m]) is above 5m, the most "
                        "the controller keeps"));
  EXPECT_THAT(file.errors[6],
              HasSubstr("team.yaml:15: rule Malformed: expr: range '5 minutes' of "
                        "rate(nginx_requests_per_second[5 minutes]) is not a duration"));
  EXPECT_THAT(file.errors[7], HasSubstr("team.yaml:17: rule Empty: expr: empty range in "
                                        "rate(nginx_requests_per_second[])"));
  EXPECT_THAT(file.errors[8], HasSubstr("team.yaml:19: rule Unterminated: expr: unterminated "
                                        "range in rate(nginx_requests_per_second[...]"));
  EXPECT_THAT(file.errors[9],
              HasSubstr("team.yaml:21: rule Unclosed: expr: expected ')' to close rate("));
  for (const std::string& e : file.errors) {
    EXPECT_THAT(e, HasSubstr("(column ")) << e;
  }
}

TEST(RuleParse, ScrapedRateRulesAreCheckedAgainstDeclarations) {
  RuleFile file = ParseRules(R"(rules:
  - alert: AppTraffic
    expr: sum(rate(app_http_requests_total[5m])) < 100
)",
                             "app.yaml");
  ASSERT_THAT(file.errors, SizeIs(0));
  ASSERT_THAT(file.notes, SizeIs(1));
  EXPECT_THAT(file.notes[0], HasSubstr("used as a per-second rate (a counter)"));
  std::vector<v1::MetricDeclaration> declared(1);
  declared[0].set_name("app_http_requests_total");
  declared[0].set_kind(v1::MetricDeclaration::GAUGE);
  declared[0].set_collector("prometheus");
  EXPECT_THAT(KindMismatches(file.rules, declared),
              ElementsAre(HasSubstr("rule AppTraffic (app.yaml:2) uses 'app_http_requests_total' "
                                    "under rate() but collector 'prometheus' declares it a gauge "
                                    "that is not a per-second rate: the rule never fires")));
  declared[0].set_per_second_rate(true);
  EXPECT_THAT(KindMismatches(file.rules, declared), SizeIs(0));
  declared[0].set_kind(v1::MetricDeclaration::HISTOGRAM);
  EXPECT_THAT(KindMismatches(file.rules, declared),
              ElementsAre(HasSubstr("as a per-second rate but collector 'prometheus' declares it "
                                    "a histogram")));
}

// The ring against a recomputation from every sample: the window always ends at `now`, covers
// between 29/30 of the range and all of it, and never a sample older than the range.
TEST(RateWindow, AverageMatchesTheSamplesOfItsBucketsAndStaysWithinTheRange) {
  const int64_t range_ms = 60'000;
  const int64_t width_ms = range_ms / RateWindow::kBuckets;
  RateWindow window(range_ms);
  std::mt19937_64 rng(5);
  std::vector<std::pair<int64_t, double>> sent;
  int64_t now = 1'700'000'000'000;
  for (int step = 0; step < 2000; ++step) {
    now += static_cast<int64_t>(rng() % 1500);
    // Mostly on time, some late (up to 80 s: some within the range, some not).
    const int64_t at = rng() % 5 == 0 ? now - static_cast<int64_t>(rng() % 80'000) : now;
    const double value = static_cast<double>(rng() % 1000);
    if (window.Add(at, value)) {
      sent.emplace_back(at, value);
    } else {
      ASSERT_LE(at, now - range_ms + width_ms) << "a sample within the range was refused";
    }
    // What the buckets hold: the samples at or after the start of the oldest bucket.
    const int64_t first_bucket_ms = (now / width_ms - RateWindow::kBuckets + 1) * width_ms;
    ASSERT_GT(first_bucket_ms, now - range_ms);
    ASSERT_LE(first_bucket_ms, now - range_ms + width_ms);
    double sum = 0;
    int count = 0;
    for (const auto& [ms, v] : sent) {
      if (ms >= first_bucket_ms) {
        sum += v;
        ++count;
      }
    }
    double average = -1;
    ASSERT_EQ(window.Average(now, &average), count > 0) << "step " << step;
    if (count > 0) {
      ASSERT_NEAR(average, sum / count, 1e-9 * (1 + sum / count)) << "step " << step;
    }
  }
}

TEST(RateWindow, GapsLateSamplesAndSilence) {
  RateWindow window(60'000);
  const int64_t t0 = 1'700'000'000'000;
  double average = 0;
  EXPECT_FALSE(window.Average(t0, &average));
  // 10 s of 300/s, a 20 s gap (missing rounds, not zeros), then 10 s of 0/s.
  for (int s = 0; s < 10; ++s) {
    window.Add(t0 + s * 1000, 300);
  }
  for (int s = 30; s < 40; ++s) {
    window.Add(t0 + s * 1000, 0);
  }
  ASSERT_TRUE(window.Average(t0 + 39'000, &average));
  EXPECT_DOUBLE_EQ(average, 150);
  // Late: measured 5 s ago, delivered now, counted in its own bucket.
  window.Add(t0 + 34'500, 1500);
  ASSERT_TRUE(window.Average(t0 + 39'000, &average));
  EXPECT_DOUBLE_EQ(average, (3000 + 1500) / 21.0);
  // Older than the ring: ignored.
  EXPECT_FALSE(window.Add(t0 + 39'000 - 120'000, 1e9));
  ASSERT_TRUE(window.Average(t0 + 39'000, &average));
  EXPECT_DOUBLE_EQ(average, (3000 + 1500) / 21.0);
  // Silence: the 300s leave first, then everything.
  ASSERT_TRUE(window.Average(t0 + 75'000, &average));
  EXPECT_DOUBLE_EQ(average, 1500 / 11.0);
  EXPECT_FALSE(window.Average(t0 + 100'000, &average));
  EXPECT_EQ(window.newest_ms(), t0 + 39'000);
  // A sample long after the last one starts the ring afresh.
  EXPECT_TRUE(window.Add(t0 + 1'000'000, 7));
  ASSERT_TRUE(window.Average(t0 + 1'000'000, &average));
  EXPECT_DOUBLE_EQ(average, 7);
}

// ---- the engine ----

struct Change {
  std::string rule;
  std::string agent;
  v1::AlertState state;
  v1::Severity severity;
  double value;
};

class RecordingSink : public AlertSink {
 public:
  void OnAlertChange(const v1::Alert& alert, const Rule* rule) override {
    changes.push_back(
        {alert.rule(), alert.agent_id(), alert.state(), alert.severity(), alert.value()});
    last = alert;
  }
  std::vector<Change> changes;
  v1::Alert last;
};

// One agent's series, fed to the engine the way the ingest thread does.
class FakeAgent {
 public:
  FakeAgent(std::string id, RuleEngine* engine, SimulatedClock* clock)
      : id_(std::move(id)), engine_(engine), clock_(clock) {}

  void Gauge(const std::string& name, double value, Labels labels = {}) {
    GaugeAt(clock_->Now(), name, value, std::move(labels));
  }
  // A sample measured at `at`, delivered now (late, as after an outage).
  void GaugeAt(absl::Time at, const std::string& name, double value, Labels labels = {}) {
    Samples(name, {{at, value}}, std::move(labels));
  }
  // One batch of several rounds (a replay, or a late delivery), in the order given; the series
  // keeps those in time order, as FleetState does, and the engine sees them all.
  void Samples(const std::string& name, const std::vector<std::pair<absl::Time, double>>& points,
               Labels labels = {}) {
    SeriesState& s = Series(name, labels);
    v1::TelemetryBatch batch;
    for (const auto& [at, value] : points) {
      s.AddValue(absl::ToUnixMillis(at), value);
      v1::Snapshot* snap = batch.add_snapshots();
      snap->set_time_unix_ms(absl::ToUnixMillis(at));
      snap->add_series_ids(Id(name, labels));
      snap->add_values(value);
    }
    engine_->OnTelemetry(id_, batch, dictionary_);
  }

  void Latencies(const std::string& name, std::vector<double> seconds) {
    LogHistogram h;
    for (double v : seconds) {
      h.Add(v);
    }
    Histogram(name, h);
  }
  void Histogram(const std::string& name, const LogHistogram& h) {
    SeriesState& s = Series(name, {});
    s.AddHistogram(clock_->NowUnixMillis(), h, absl::ToInt64Milliseconds(absl::Minutes(5)));
    v1::TelemetryBatch batch;
    v1::Snapshot* snap = batch.add_snapshots();
    snap->add_histograms()->set_series_id(Id(name, {}));
    engine_->OnTelemetry(id_, batch, dictionary_);
  }

  // The agent's series are freed, as FleetState::Evict does after OnEvicting.
  void Evict() {
    engine_->ForgetAgent(id_);
    series_.clear();
    ids_.clear();
    dictionary_.clear();
  }

 private:
  std::string Key(const std::string& name, const Labels& labels) {
    std::string key = name;
    for (const auto& [k, v] : labels) {
      key += "," + k + "=" + v;
    }
    return key;
  }
  SeriesState& Series(const std::string& name, const Labels& labels) {
    auto& slot = series_[Key(name, labels)];
    if (slot == nullptr) {
      slot = std::make_unique<SeriesState>(MakeSeriesKey(name, labels));
      ids_[Key(name, labels)] = static_cast<uint32_t>(dictionary_.size());
      dictionary_.push_back(slot.get());
    }
    return *slot;
  }
  uint32_t Id(const std::string& name, const Labels& labels) { return ids_[Key(name, labels)]; }

  std::string id_;
  RuleEngine* engine_;
  SimulatedClock* clock_;
  std::map<std::string, std::unique_ptr<SeriesState>> series_;
  std::map<std::string, uint32_t> ids_;
  std::vector<SeriesState*> dictionary_;
};

std::vector<Rule> Rules(const std::string& yaml) {
  RuleFile file = ParseRules(yaml, "test.yaml");
  EXPECT_THAT(file.errors, SizeIs(0));
  return file.rules;
}

TEST(RuleEngine, PendingThenFiringAfterForThenResolved) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: HighCPU
    expr: host_cpu_usage_ratio > 0.9
    for: 5m
    severity: SEV3
)"),
                    &clock, &sink);
  engine.OnConnected("web-1", {{"role", "api"}});
  FakeAgent agent("web-1", &engine, &clock);
  agent.Gauge("host_cpu_usage_ratio", 0.95);
  ASSERT_THAT(sink.changes, SizeIs(1));
  EXPECT_EQ(sink.changes[0].state, v1::PENDING);
  EXPECT_EQ(sink.last.labels().at("role"), "api");  // agent labels travel with the alert

  const std::string id = sink.last.id();
  clock.Advance(absl::Minutes(4));
  agent.Gauge("host_cpu_usage_ratio", 0.97);
  // Still pending: only a checkpoint of the same alert, saying when it was last judged.
  ASSERT_THAT(sink.changes, SizeIs(2));
  EXPECT_EQ(sink.changes[1].state, v1::PENDING);
  EXPECT_EQ(sink.last.id(), id);
  EXPECT_EQ(sink.last.evaluated_unix_ms(), clock.NowUnixMillis());
  clock.Advance(absl::Seconds(5));
  agent.Gauge("host_cpu_usage_ratio", 0.97);
  EXPECT_THAT(sink.changes, SizeIs(2));  // checkpoints are at most every 10 s
  clock.Advance(absl::Seconds(55));
  agent.Gauge("host_cpu_usage_ratio", 0.96);
  ASSERT_THAT(sink.changes, SizeIs(3));
  EXPECT_EQ(sink.changes[2].state, v1::FIRING);
  EXPECT_EQ(sink.changes[2].value, 0.96);
  EXPECT_EQ(engine.firing_count(), 1u);

  clock.Advance(absl::Seconds(1));
  agent.Gauge("host_cpu_usage_ratio", 0.3);
  ASSERT_THAT(sink.changes, SizeIs(4));
  EXPECT_EQ(sink.changes[3].state, v1::RESOLVED);
  EXPECT_NE(sink.last.fired_unix_ms(), 0);
  EXPECT_THAT(engine.ActiveAlerts(), SizeIs(0));
}

TEST(RuleEngine, PendingThatClearsIsDroppedNotFired) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: HighCPU
    expr: host_cpu_usage_ratio > 0.9
    for: 1m
)"),
                    &clock, &sink);
  FakeAgent agent("web-1", &engine, &clock);
  agent.Gauge("host_cpu_usage_ratio", 0.95);
  clock.Advance(absl::Seconds(30));
  agent.Gauge("host_cpu_usage_ratio", 0.5);
  ASSERT_THAT(sink.changes, SizeIs(2));
  EXPECT_EQ(sink.changes[1].state, v1::RESOLVED);
  EXPECT_EQ(sink.last.fired_unix_ms(), 0);  // it never fired
  // And the `for` clock starts again from zero.
  agent.Gauge("host_cpu_usage_ratio", 0.95);
  clock.Advance(absl::Seconds(59));
  agent.Gauge("host_cpu_usage_ratio", 0.95);
  EXPECT_EQ(engine.firing_count(), 0u);
}

TEST(RuleEngine, MatchersOnSeriesAndAgentLabels) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: ProdRootDisk
    expr: host_disk_used_ratio{mount="/",env="prod"} > 0.8
)"),
                    &clock, &sink);
  engine.OnConnected("prod-1", {{"env", "prod"}});
  engine.OnConnected("dev-1", {{"env", "dev"}});
  FakeAgent prod("prod-1", &engine, &clock);
  FakeAgent dev("dev-1", &engine, &clock);
  prod.Gauge("host_disk_used_ratio", 0.9, {{"mount", "/data"}});
  dev.Gauge("host_disk_used_ratio", 0.9, {{"mount", "/"}});
  EXPECT_THAT(sink.changes, SizeIs(0));
  prod.Gauge("host_disk_used_ratio", 0.9, {{"mount", "/"}});
  ASSERT_THAT(sink.changes, SizeIs(1));
  EXPECT_EQ(sink.changes[0].agent, "prod-1");
  EXPECT_EQ(sink.changes[0].state, v1::FIRING);  // for: 0s fires on the first sample
  EXPECT_EQ(sink.last.labels().at("mount"), "/");
}

TEST(RuleEngine, AgentLabelsThatChangeOnReconnectAreMatchedAgain) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: ProdRootDisk
    expr: host_disk_used_ratio{mount="/",env="prod"} > 0.8
)"),
                    &clock, &sink);
  engine.OnConnected("web-1", {{"env", "staging"}});
  FakeAgent agent("web-1", &engine, &clock);
  agent.Gauge("host_disk_used_ratio", 0.9, {{"mount", "/"}});
  EXPECT_THAT(sink.changes, SizeIs(0));
  engine.OnDisconnected("web-1");
  engine.OnConnected("web-1", {{"env", "prod"}});  // the same series, now in prod
  clock.Advance(absl::Seconds(1));
  agent.Gauge("host_disk_used_ratio", 0.9, {{"mount", "/"}});
  ASSERT_THAT(sink.changes, SizeIs(1));
  EXPECT_EQ(sink.changes[0].state, v1::FIRING);
  EXPECT_EQ(sink.last.labels().at("env"), "prod");
}

TEST(RuleEngine, ADisconnectTouchesOnlyThatAgentsAlertsThroughEveryChangeOfThem) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: DiskFull
    expr: host_disk_used_ratio > 0.8
  - alert: DiskFilling
    expr: host_disk_used_ratio{mount="/data"} > 0.5
    for: 1h
)"),
                    &clock, &sink);
  // 40 agents, each with a firing and a pending alert on two disks.
  std::vector<std::unique_ptr<FakeAgent>> agents;
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) {
    const std::string id = absl::StrCat("a-", i);
    ids.push_back(id);
    engine.OnConnected(id, {});
    agents.push_back(std::make_unique<FakeAgent>(id, &engine, &clock));
    agents.back()->Gauge("host_disk_used_ratio", 0.9, {{"mount", "/"}});
    agents.back()->Gauge("host_disk_used_ratio", 0.6, {{"mount", "/data"}});
  }
  // Half of them see their pending alert resolve first (the index must forget those keys).
  for (int i = 0; i < 40; i += 2) {
    agents[i]->Gauge("host_disk_used_ratio", 0.1, {{"mount", "/data"}});
  }
  auto states_of = [&](const std::string& agent) {
    std::multiset<std::string> states;
    for (const v1::Alert& a : engine.ActiveAlerts()) {
      if (a.agent_id() == agent) {
        states.insert(absl::StrCat(a.rule(), ":", v1::AlertState_Name(a.state())));
      }
    }
    return states;
  };
  using States = std::multiset<std::string>;
  for (int i = 0; i < 40; i += 4) {  // every fourth, both kinds (resolved pending, or not)
    engine.OnDisconnected(ids[i]);
    engine.OnDisconnected(ids[i + 1]);
  }
  for (int i = 0; i < 40; ++i) {
    const std::string& id = ids[i];
    const bool gone = i % 4 == 0 || i % 4 == 1;
    if (gone) {
      // Firing went stale; pending was dropped, not kept.
      EXPECT_EQ(states_of(id), States({"DiskFull:STALE"})) << id;
    } else if (i % 2 == 0) {
      EXPECT_EQ(states_of(id), States({"DiskFull:FIRING"})) << id;
    } else {
      EXPECT_EQ(states_of(id), States({"DiskFull:FIRING", "DiskFilling:PENDING"})) << id;
    }
  }
  // Back again: data brings the stale alert back to firing, and a second disconnect finds it.
  engine.OnConnected(ids[0], {});
  clock.Advance(absl::Seconds(1));
  agents[0]->Gauge("host_disk_used_ratio", 0.9, {{"mount", "/"}});
  EXPECT_EQ(states_of(ids[0]), States({"DiskFull:FIRING"}));
  engine.OnDisconnected(ids[0]);
  EXPECT_EQ(states_of(ids[0]), States({"DiskFull:STALE"}));
  // An agent never seen, or with no alert, changes nothing.
  const size_t before = sink.changes.size();
  engine.OnDisconnected("nobody");
  engine.OnDisconnected(ids[2] + "x");
  EXPECT_EQ(sink.changes.size(), before);
}

TEST(RuleEngine, EvictionFreesTheAgentsSlotsAndContributions) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: LowThroughput
    expr: sum(nginx_requests_per_second) < 100
  - alert: HighCPU
    expr: host_cpu_usage_ratio > 0.9
)"),
                    &clock, &sink, RuleEngine::Options{.aggregate_every = absl::ZeroDuration()});
  FakeAgent a("a", &engine, &clock), b("b", &engine, &clock);
  a.Gauge("nginx_requests_per_second", 60);
  ASSERT_THAT(sink.changes, SizeIs(1));  // 60 < 100
  b.Gauge("nginx_requests_per_second", 50);
  b.Gauge("host_cpu_usage_ratio", 0.5);
  ASSERT_THAT(sink.changes, SizeIs(2));  // 110: resolved
  EXPECT_EQ(sink.changes[1].state, v1::RESOLVED);
  EXPECT_EQ(engine.slots_in_use(), 3u);
  b.Evict();
  EXPECT_EQ(engine.slots_in_use(), 1u);
  engine.Tick();  // b's contribution went with its slots: 60 again
  ASSERT_THAT(sink.changes, SizeIs(3));
  EXPECT_EQ(sink.changes[2].state, v1::FIRING);
  EXPECT_EQ(sink.changes[2].value, 60);
  // A new agent takes a freed slot, with no trace of the old series' state.
  FakeAgent c("c", &engine, &clock);
  c.Gauge("host_cpu_usage_ratio", 0.95);
  EXPECT_EQ(engine.slots_in_use(), 2u);
  ASSERT_THAT(sink.changes, SizeIs(4));
  EXPECT_EQ(sink.changes[3].agent, "c");
  EXPECT_EQ(sink.changes[3].state, v1::FIRING);
  a.Evict();
  c.Evict();
  EXPECT_EQ(engine.slots_in_use(), 0u);
}

// Two quantile rules with different windows on one series, judged on random latencies: each
// alert is firing exactly when the quantile of its window, recomputed from scratch, is above the
// threshold.
TEST(RuleEngine, WindowedQuantilesMatchRecomputationOnRandomLatencies) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: SlowShort
    expr: p95(nginx_request_duration_seconds) > 1
    window: 5s
  - alert: SlowLong
    expr: p50(nginx_request_duration_seconds) > 0.2
    window: 30s
)"),
                    &clock, &sink);
  FakeAgent agent("api-1", &engine, &clock);
  std::mt19937_64 rng(11);
  std::vector<std::pair<int64_t, LogHistogram>> sent;
  std::map<std::string, bool> firing;
  for (int step = 0; step < 300; ++step) {
    clock.Advance(absl::Milliseconds(rng() % 4 == 0 ? 3000 : 1000));
    LogHistogram h;
    std::lognormal_distribution<double> latency(std::log(rng() % 5 == 0 ? 1.5 : 0.1), 0.7);
    const int n = 1 + static_cast<int>(rng() % 100);
    for (int i = 0; i < n; ++i) {
      h.Add(latency(rng));
    }
    sent.emplace_back(clock.NowUnixMillis(), h);
    agent.Histogram("nginx_request_duration_seconds", h);
    for (const Change& c : sink.changes) {
      firing[c.rule] = c.state == v1::FIRING;
    }
    sink.changes.clear();
    auto expected = [&](int64_t window_ms, double q) {
      LogHistogram merged;
      for (const auto& [ms, interval] : sent) {
        if (ms > clock.NowUnixMillis() - window_ms) {
          merged.Merge(interval);
        }
      }
      return merged.Quantile(q);
    };
    ASSERT_EQ(firing["SlowShort"], expected(5'000, 0.95) > 1) << "step " << step;
    ASSERT_EQ(firing["SlowLong"], expected(30'000, 0.50) > 0.2) << "step " << step;
  }
}

TEST(RuleEngine, SeverityTiersAndEscalation) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: DiskSpaceWarning
    expr: host_disk_used_ratio > 0.80
    severity: SEV3
    tiers: [{threshold: 0.95, severity: SEV1}]
)"),
                    &clock, &sink);
  FakeAgent agent("db-1", &engine, &clock);
  agent.Gauge("host_disk_used_ratio", 0.85, {{"mount", "/"}});
  agent.Gauge("host_disk_used_ratio", 0.96, {{"mount", "/"}});
  ASSERT_THAT(sink.changes, SizeIs(2));
  EXPECT_EQ(sink.changes[0].severity, v1::SEV3);
  EXPECT_EQ(sink.changes[1].state, v1::FIRING);
  EXPECT_EQ(sink.changes[1].severity, v1::SEV1);
}

TEST(RuleEngine, FleetWideSumAndGroups) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: LowThroughput
    expr: sum by (service) (nginx_requests_per_second) < 100
)"),
                    &clock, &sink, RuleEngine::Options{.aggregate_every = absl::ZeroDuration()});
  engine.OnConnected("a", {{"service", "rag"}});
  engine.OnConnected("b", {{"service", "rag"}});
  engine.OnConnected("c", {{"service", "auth"}});
  FakeAgent a("a", &engine, &clock), b("b", &engine, &clock), c("c", &engine, &clock);
  a.Gauge("nginx_requests_per_second", 60);
  ASSERT_THAT(sink.changes, SizeIs(1));  // rag: 60 < 100
  EXPECT_EQ(sink.changes[0].state, v1::FIRING);
  EXPECT_EQ(sink.changes[0].agent, "");
  EXPECT_EQ(sink.last.labels().at("service"), "rag");
  b.Gauge("nginx_requests_per_second", 50);  // rag: 110
  ASSERT_THAT(sink.changes, SizeIs(2));
  EXPECT_EQ(sink.changes[1].state, v1::RESOLVED);
  EXPECT_EQ(sink.changes[1].value, 110);
  c.Gauge("nginx_requests_per_second", 500);  // auth alone: fine
  EXPECT_THAT(sink.changes, SizeIs(2));
  // b goes away: rag drops to 60 again.
  engine.OnDisconnected("b");
  engine.Tick();
  ASSERT_THAT(sink.changes, SizeIs(3));
  EXPECT_EQ(sink.changes[2].state, v1::FIRING);
  EXPECT_EQ(sink.changes[2].value, 60);
}

// Fleet-wide walks over enough members hold the next one back for `aggregate_cost_share` times
// the smaller of the last two walks' cost (wall time), whatever the rule clock says; a held one
// is counted, and the change is judged once the share allows.
TEST(RuleEngine, FleetWideEvaluationsAreHeldToTheirShareOfTheIngestThread) {
  const std::string rules = R"(rules:
  - alert: LowThroughput
    expr: sum(nginx_requests_per_second) < 100
)";
  for (const int share : {1'000'000'000, 1}) {
    SCOPED_TRACE(share);
    SimulatedClock clock;
    RecordingSink sink;
    RuleEngine engine(Rules(rules), &clock, &sink,
                      RuleEngine::Options{.aggregate_every = absl::ZeroDuration(),
                                          .aggregate_hold_from_members = 0,
                                          .aggregate_cost_share = share});
    FakeAgent a("a", &engine, &clock), b("b", &engine, &clock);
    a.Gauge("nginx_requests_per_second", 60);
    ASSERT_THAT(sink.changes, SizeIs(1));
    EXPECT_EQ(sink.changes[0].state, v1::FIRING);
    // Only one walk so far: nothing to compare it with, so the second is not held.
    b.Gauge("nginx_requests_per_second", 50);  // 110
    ASSERT_THAT(sink.changes, SizeIs(2));
    EXPECT_EQ(sink.changes[1].state, v1::RESOLVED);
    ASSERT_GT(engine.aggregate_cost(), absl::ZeroDuration());
    absl::SleepFor(absl::Milliseconds(20));    // far more than a walk of two agents costs
    b.Gauge("nginx_requests_per_second", 30);  // 90: fires when judged
    if (share == 1) {
      ASSERT_THAT(sink.changes, SizeIs(3)) << "the share allowed it";
      EXPECT_EQ(sink.changes[2].state, v1::FIRING);
      EXPECT_EQ(engine.aggregates_deferred(), 0u);
    } else {
      EXPECT_THAT(sink.changes, SizeIs(2)) << "held: the cost times the share has not passed";
      EXPECT_EQ(engine.aggregates_deferred(), 1u);
      engine.Tick();
      EXPECT_THAT(sink.changes, SizeIs(2));
      EXPECT_EQ(engine.aggregates_deferred(), 2u);
    }
  }
}

TEST(RuleEngine, AvgMinMaxCount) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: AvgCPU
    expr: avg(host_cpu_usage_ratio) > 0.5
  - alert: MinCPU
    expr: min(host_cpu_usage_ratio) > 0.15
  - alert: MaxCPU
    expr: max(host_cpu_usage_ratio) > 0.85
  - alert: FewHosts
    expr: count(host_cpu_usage_ratio) < 3
)"),
                    &clock, &sink, RuleEngine::Options{.aggregate_every = absl::ZeroDuration()});
  FakeAgent a("a", &engine, &clock), b("b", &engine, &clock);
  a.Gauge("host_cpu_usage_ratio", 0.2);
  b.Gauge("host_cpu_usage_ratio", 0.9);
  std::map<std::string, v1::AlertState> states;
  std::map<std::string, double> values;
  for (const v1::Alert& alert : engine.ActiveAlerts()) {
    states[alert.rule()] = alert.state();
    values[alert.rule()] = alert.value();
  }
  EXPECT_EQ(states["AvgCPU"], v1::FIRING);
  EXPECT_DOUBLE_EQ(values["AvgCPU"], 0.55);
  EXPECT_EQ(states["MinCPU"], v1::FIRING);
  EXPECT_DOUBLE_EQ(values["MinCPU"], 0.2);
  EXPECT_EQ(states["MaxCPU"], v1::FIRING);
  EXPECT_EQ(states["FewHosts"], v1::FIRING);
  EXPECT_DOUBLE_EQ(values["FewHosts"], 2);
}

TEST(RuleEngine, HistogramQuantileOverTheWindow) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: HighAPILatency
    expr: p95(nginx_request_duration_seconds) > 2
    window: 10s
)"),
                    &clock, &sink);
  FakeAgent agent("api-1", &engine, &clock);
  agent.Latencies("nginx_request_duration_seconds", std::vector<double>(100, 0.05));
  clock.Advance(absl::Seconds(1));
  // 10 slow of 200 in the window: p95 is still fast.
  agent.Latencies("nginx_request_duration_seconds", [] {
    std::vector<double> v(90, 0.05);
    v.insert(v.end(), 10, 3.0);
    return v;
  }());
  EXPECT_THAT(sink.changes, SizeIs(0));
  clock.Advance(absl::Seconds(1));
  agent.Latencies("nginx_request_duration_seconds", std::vector<double>(100, 3.0));
  ASSERT_THAT(sink.changes, SizeIs(1));
  EXPECT_EQ(sink.changes[0].state, v1::FIRING);
  EXPECT_NEAR(sink.changes[0].value, 3.0, 0.05);
  // Ten seconds of fast requests later the slow interval has left the window.
  for (int i = 0; i < 11; ++i) {
    clock.Advance(absl::Seconds(1));
    agent.Latencies("nginx_request_duration_seconds", std::vector<double>(100, 0.05));
  }
  ASSERT_THAT(sink.changes, SizeIs(2));
  EXPECT_EQ(sink.changes[1].state, v1::RESOLVED);
}

TEST(RuleEngine, DisconnectMakesFiringStaleNotResolved) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: SlowQueries
    expr: pg_longest_query_seconds > 5
)"),
                    &clock, &sink, RuleEngine::Options{.stale_resolve_after = absl::Minutes(30)});
  FakeAgent agent("db-1", &engine, &clock);
  agent.Gauge("pg_longest_query_seconds", 12);
  ASSERT_THAT(sink.changes, SizeIs(1));
  engine.OnDisconnected("db-1");
  ASSERT_THAT(sink.changes, SizeIs(2));
  EXPECT_EQ(sink.changes[1].state, v1::STALE);
  EXPECT_EQ(sink.last.labels().at("stale_reason"), "its agent disconnected");
  EXPECT_EQ(sink.last.id(), engine.ActiveAlerts().at(0).id());

  // Back, and still slow: the same alert fires again, not a new one.
  const std::string id = sink.last.id();
  agent.Gauge("pg_longest_query_seconds", 20);
  ASSERT_THAT(sink.changes, SizeIs(3));
  EXPECT_EQ(sink.changes[2].state, v1::FIRING);
  EXPECT_EQ(sink.last.id(), id);
  EXPECT_EQ(sink.last.labels().count("stale_reason"), 0u);

  // Gone for good: stale, then resolved after stale_resolve_after, with the reason.
  engine.OnDisconnected("db-1");
  clock.Advance(absl::Minutes(29));
  engine.Tick();
  EXPECT_EQ(sink.changes.back().state, v1::STALE);
  clock.Advance(absl::Minutes(1));
  engine.Tick();
  EXPECT_EQ(sink.changes.back().state, v1::RESOLVED);
  EXPECT_THAT(sink.last.labels().at("resolved_reason"), HasSubstr("stale for 30m"));
}

TEST(RuleEngine, SeriesThatStopsArrivingGoesStale) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: BlockedQueries
    expr: pg_blocked_queries > 0
)"),
                    &clock, &sink);
  FakeAgent agent("db-1", &engine, &clock);
  agent.Gauge("pg_blocked_queries", 2);
  clock.Advance(absl::Seconds(29));
  engine.Tick();
  EXPECT_EQ(sink.changes.back().state, v1::FIRING);
  clock.Advance(absl::Seconds(1));
  engine.Tick();
  EXPECT_EQ(sink.changes.back().state, v1::STALE);
  EXPECT_THAT(sink.last.labels().at("stale_reason"), HasSubstr("no data for 30s"));
}

// ---- reloading the rules ----

TEST(RuleEngineReload, UnchangedRulesKeepTheirAlertsRemovedOnesResolveWithAReason) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: SlowQueries
    expr: pg_longest_query_seconds > 5
  - alert: HighCPU
    expr: host_cpu_usage_ratio > 0.9
    for: 1m
  - alert: HighLoad
    expr: host_load1 > 4
)"),
                    &clock, &sink);
  FakeAgent agent("db-1", &engine, &clock);
  agent.Gauge("pg_longest_query_seconds", 12);  // firing
  agent.Gauge("host_cpu_usage_ratio", 0.95);    // pending, 1m to go
  agent.Gauge("host_load1", 9);                 // firing, but its rule goes away
  ASSERT_THAT(sink.changes, SizeIs(3));
  std::map<std::string, std::string> ids;
  for (const v1::Alert& a : engine.ActiveAlerts()) {
    ids[a.rule()] = a.id();
  }

  RuleEngine::Replacement r = engine.ReplaceRules(Rules(R"(rules:
  - alert: SlowQueries
    expr: pg_longest_query_seconds > 5
  - alert: HighCPU
    expr: host_cpu_usage_ratio > 0.9
    for: 1m
  - alert: BlockedQueries
    expr: pg_blocked_queries > 0
)"));
  EXPECT_THAT(r.added, ElementsAre("BlockedQueries"));
  EXPECT_THAT(r.removed, ElementsAre("HighLoad"));
  EXPECT_THAT(r.changed, SizeIs(0));
  EXPECT_EQ(r.alerts_kept, 2u);
  EXPECT_EQ(r.alerts_resolved, 1u);
  ASSERT_THAT(sink.changes, SizeIs(4));  // only HighLoad's resolution: the others say nothing
  EXPECT_EQ(sink.changes[3].rule, "HighLoad");
  EXPECT_EQ(sink.changes[3].state, v1::RESOLVED);
  EXPECT_EQ(sink.last.labels().at("resolved_reason"),
            "rule HighLoad removed by a configuration reload");
  EXPECT_EQ(engine.rule_count(), 3u);

  // The firing alert is the same alert, still firing; fresh data above the threshold says
  // nothing new, and below it resolves that same alert.
  agent.Gauge("pg_longest_query_seconds", 13);
  EXPECT_THAT(sink.changes, SizeIs(4));
  EXPECT_EQ(engine.firing_count(), 1u);
  // The pending one keeps its `for` clock: it fires one minute after it began, not after the
  // reload.
  clock.Advance(absl::Minutes(1));
  agent.Gauge("host_cpu_usage_ratio", 0.95);
  ASSERT_THAT(sink.changes, SizeIs(5));
  EXPECT_EQ(sink.changes[4].state, v1::FIRING);
  EXPECT_EQ(sink.last.id(), ids["HighCPU"]);
  agent.Gauge("pg_longest_query_seconds", 1);
  ASSERT_THAT(sink.changes, SizeIs(6));
  EXPECT_EQ(sink.changes[5].state, v1::RESOLVED);
  EXPECT_EQ(sink.last.id(), ids["SlowQueries"]);
  // The removed rule no longer evaluates; the added one does.
  agent.Gauge("host_load1", 9);
  agent.Gauge("pg_blocked_queries", 3);
  ASSERT_THAT(sink.changes, SizeIs(7));
  EXPECT_EQ(sink.changes[6].rule, "BlockedQueries");
}

TEST(RuleEngineReload, ChangedRuleKeepsItsAlertAndJudgesByTheNewDefinition) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: Disk
    expr: host_disk_used_ratio > 0.8
    severity: SEV3
    summary: old words
)"),
                    &clock, &sink);
  FakeAgent agent("web-1", &engine, &clock);
  agent.Gauge("host_disk_used_ratio", 0.85);
  ASSERT_THAT(sink.changes, SizeIs(1));
  const std::string id = sink.last.id();

  RuleEngine::Replacement r = engine.ReplaceRules(Rules(R"(rules:
  - alert: Disk
    expr: host_disk_used_ratio > 0.9
    severity: SEV2
    summary: new words
)"));
  EXPECT_THAT(r.changed, ElementsAre("Disk"));
  EXPECT_EQ(r.alerts_kept, 1u);
  EXPECT_THAT(sink.changes, SizeIs(1));
  EXPECT_EQ(engine.ActiveAlerts().at(0).summary(), "new words");
  EXPECT_EQ(engine.ActiveAlerts().at(0).expr(), "host_disk_used_ratio > 0.9");

  agent.Gauge("host_disk_used_ratio", 0.95);  // new severity, same alert
  ASSERT_THAT(sink.changes, SizeIs(2));
  EXPECT_EQ(sink.changes[1].severity, v1::SEV2);
  EXPECT_EQ(sink.last.id(), id);
  agent.Gauge("host_disk_used_ratio", 0.85);  // fine by the new threshold
  ASSERT_THAT(sink.changes, SizeIs(3));
  EXPECT_EQ(sink.changes[2].state, v1::RESOLVED);
  EXPECT_EQ(sink.last.id(), id);
}

TEST(RuleEngineReload, FleetWideRulesKeepOrRefillTheirContributions) {
  SimulatedClock clock;
  RecordingSink sink;
  const RuleEngine::Options options{.aggregate_every = absl::ZeroDuration(),
                                    .no_data_stale_after = absl::Seconds(30)};
  RuleEngine engine(Rules(R"(rules:
  - alert: LowThroughput
    expr: sum(nginx_requests_per_second) < 100
  - alert: FewAgents
    expr: count(host_load1) < 5
)"),
                    &clock, &sink, options);
  FakeAgent a("a", &engine, &clock), b("b", &engine, &clock);
  a.Gauge("nginx_requests_per_second", 40);
  b.Gauge("nginx_requests_per_second", 30);
  a.Gauge("host_load1", 1);
  ASSERT_EQ(engine.firing_count(), 2u);
  const size_t before = sink.changes.size();

  // LowThroughput unchanged (moved to another place in the file): it keeps both agents' values;
  // FewAgents changed: it refills from the next batches and is not resolved meanwhile.
  engine.ReplaceRules(Rules(R"(rules:
  - alert: FewAgents
    expr: count(host_load1) < 3
  - alert: LowThroughput
    expr: sum(nginx_requests_per_second) < 100
)"));
  engine.Tick();
  EXPECT_EQ(sink.changes.size(), before);
  EXPECT_EQ(engine.firing_count(), 2u);
  // One new value from a: the sum still counts b's 30 (carried over).
  a.Gauge("nginx_requests_per_second", 50);
  EXPECT_EQ(engine.firing_count(), 2u);
  for (const v1::Alert& alert : engine.ActiveAlerts()) {
    if (alert.rule() == "LowThroughput") {
      EXPECT_EQ(alert.value(), 80);
    }
  }
  // Nothing comes back for FewAgents: after the refill time its group resolves.
  clock.Advance(absl::Seconds(30));
  b.Gauge("nginx_requests_per_second", 30);
  engine.Tick();
  ASSERT_EQ(sink.changes.back().rule, "FewAgents");
  EXPECT_EQ(sink.changes.back().state, v1::RESOLVED);
}

TEST(RuleEngineReload, RuleThatChangesKindResolvesItsAlerts) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: Load
    expr: host_load1 > 4
)"),
                    &clock, &sink);
  FakeAgent agent("web-1", &engine, &clock);
  agent.Gauge("host_load1", 9);
  ASSERT_EQ(engine.firing_count(), 1u);
  RuleEngine::Replacement r = engine.ReplaceRules(Rules(R"(rules:
  - alert: Load
    expr: max(host_load1) > 4
)"));
  EXPECT_EQ(r.alerts_resolved, 1u);
  EXPECT_EQ(sink.changes.back().state, v1::RESOLVED);
  EXPECT_EQ(sink.last.labels().at("resolved_reason"),
            "rule Load changed from per-agent to fleet-wide by a configuration reload");
  EXPECT_THAT(engine.ActiveAlerts(), SizeIs(0));
}

// ---- telemetry time and restarts ----

TEST(RuleEngine, ForIsMeasuredInTelemetryTime) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: HighLoad
    expr: host_load1 > 4
    for: 20s
)"),
                    &clock, &sink);
  FakeAgent agent("web-1", &engine, &clock);
  const absl::Time start = clock.Now();
  agent.Gauge("host_load1", 9);
  ASSERT_THAT(sink.changes, SizeIs(1));
  // Batches held up for 7 s arrive together: their samples, not their arrival, move the timer.
  clock.Advance(absl::Seconds(26));
  agent.GaugeAt(start + absl::Seconds(19), "host_load1", 9);
  EXPECT_EQ(engine.firing_count(), 0u);
  agent.GaugeAt(start + absl::Seconds(20), "host_load1", 9);
  ASSERT_EQ(engine.firing_count(), 1u);
  EXPECT_EQ(sink.last.fired_unix_ms(), absl::ToUnixMillis(start + absl::Seconds(20)));
  EXPECT_EQ(sink.last.active_since_unix_ms(), absl::ToUnixMillis(start));
}

// Keeps what an incident manager would store: the latest record of each alert by id.
class StoreSink : public AlertSink {
 public:
  void OnAlertChange(const v1::Alert& alert, const Rule* rule) override {
    records[alert.id()] = alert;
    changes.push_back(alert);
  }
  // What Store::ListAlerts(false) would give a restarted controller.
  std::vector<v1::Alert> Unresolved() const {
    std::vector<v1::Alert> out;
    for (const auto& [id, alert] : records) {
      if (alert.state() != v1::RESOLVED) {
        out.push_back(alert);
      }
    }
    return out;
  }
  std::map<std::string, v1::Alert> records;
  std::vector<v1::Alert> changes;
};

constexpr char kHighLoadFor20s[] = R"(rules:
  - alert: HighLoad
    expr: host_load1 > 4
    for: 20s
)";

// A controller run: an engine fed by one agent, holding load high from `from` to `to` seconds
// after `start`, one sample a second.
void HoldHighLoad(RuleEngine& engine, SimulatedClock& clock, absl::Time start, int from, int to) {
  engine.OnConnected("web-1", {{"role", "api"}});
  FakeAgent agent("web-1", &engine, &clock);
  for (int s = from; s <= to; ++s) {
    clock.Set(start + absl::Seconds(s));
    agent.Gauge("host_load1", 9);
  }
}

TEST(RuleEngineRestore, PendingTimerKeepsItsStartAcrossAShortOutage) {
  SimulatedClock clock;
  StoreSink store;
  const absl::Time start = clock.Now();
  std::string id;
  {
    RuleEngine first(Rules(kHighLoadFor20s), &clock, &store);
    HoldHighLoad(first, clock, start, 0, 15);  // pending for 15 s, then the controller dies
    ASSERT_THAT(first.ActiveAlerts(), SizeIs(1));
    id = first.ActiveAlerts()[0].id();
  }
  ASSERT_THAT(store.Unresolved(), SizeIs(1));
  EXPECT_EQ(store.Unresolved()[0].state(), v1::PENDING);

  clock.Set(start + absl::Seconds(18));  // down for 3 s
  StoreSink after;
  RuleEngine second(Rules(kHighLoadFor20s), &clock, &after);
  RuleEngine::Restoration r = second.Restore(store.Unresolved(), clock.Now());
  EXPECT_EQ(r.pending_kept, 1u);
  EXPECT_THAT(after.changes, SizeIs(0));
  HoldHighLoad(second, clock, start, 18, 19);
  EXPECT_EQ(second.firing_count(), 0u);
  HoldHighLoad(second, clock, start, 20, 20);
  ASSERT_EQ(second.firing_count(), 1u);
  const v1::Alert& fired = after.changes.back();
  EXPECT_EQ(fired.state(), v1::FIRING);
  EXPECT_EQ(fired.id(), id);
  EXPECT_EQ(fired.fired_unix_ms(), absl::ToUnixMillis(start + absl::Seconds(20)));
  EXPECT_EQ(fired.active_since_unix_ms(), absl::ToUnixMillis(start));
  EXPECT_EQ(fired.labels().at("role"), "api");
}

TEST(RuleEngineRestore, OutageLongerThanForPlusAMinuteRestartsTheTimer) {
  SimulatedClock clock;
  StoreSink store;
  const absl::Time start = clock.Now();
  {
    RuleEngine first(Rules(kHighLoadFor20s), &clock, &store);
    HoldHighLoad(first, clock, start, 0, 15);
  }
  // The last record says it was judged at 10 s (a checkpoint); 20 s + 1 m later is the limit.
  ASSERT_THAT(store.Unresolved(), SizeIs(1));
  EXPECT_EQ(store.Unresolved()[0].evaluated_unix_ms(),
            absl::ToUnixMillis(start + absl::Seconds(10)));

  {  // Within the tolerance, and still high on return: it fires at once, on the old start.
    clock.Set(start + absl::Seconds(89));
    StoreSink after;
    RuleEngine second(Rules(kHighLoadFor20s), &clock, &after);
    EXPECT_EQ(second.Restore(store.Unresolved(), clock.Now()).pending_kept, 1u);
    HoldHighLoad(second, clock, start, 90, 90);
    EXPECT_EQ(second.firing_count(), 1u);
  }
  {  // Beyond it: the same alert waits its 20 s again from the first sample after the restart.
    clock.Set(start + absl::Seconds(91));
    StoreSink after;
    RuleEngine second(Rules(kHighLoadFor20s), &clock, &after);
    EXPECT_EQ(second.Restore(store.Unresolved(), clock.Now()).pending_restarted, 1u);
    HoldHighLoad(second, clock, start, 92, 111);
    EXPECT_EQ(second.firing_count(), 0u);
    ASSERT_THAT(after.changes, SizeIs(2));  // the new start, and a checkpoint
    EXPECT_EQ(after.changes[0].state(), v1::PENDING);
    EXPECT_EQ(after.changes[0].id(), store.Unresolved()[0].id());
    EXPECT_EQ(after.changes[0].active_since_unix_ms(),
              absl::ToUnixMillis(start + absl::Seconds(92)));
    HoldHighLoad(second, clock, start, 112, 112);
    ASSERT_EQ(second.firing_count(), 1u);
    EXPECT_EQ(after.changes.back().fired_unix_ms(), absl::ToUnixMillis(start + absl::Seconds(112)));
  }
  {  // Within the tolerance but no longer high on return: the pending alert quietly ends.
    clock.Set(start + absl::Seconds(30));
    StoreSink after;
    RuleEngine second(Rules(kHighLoadFor20s), &clock, &after);
    second.Restore(store.Unresolved(), clock.Now());
    second.OnConnected("web-1", {{"role", "api"}});
    FakeAgent agent("web-1", &second, &clock);
    agent.Gauge("host_load1", 1);
    ASSERT_THAT(after.changes, SizeIs(1));
    EXPECT_EQ(after.changes[0].state(), v1::RESOLVED);
    EXPECT_EQ(after.changes[0].fired_unix_ms(), 0);
    EXPECT_THAT(second.ActiveAlerts(), SizeIs(0));
  }
}

TEST(RuleEngineRestore, FiringAlertComesBackAsTheSameAlert) {
  SimulatedClock clock;
  StoreSink store;
  const absl::Time start = clock.Now();
  {
    RuleEngine first(Rules(kHighLoadFor20s), &clock, &store);
    HoldHighLoad(first, clock, start, 0, 25);
    ASSERT_EQ(first.firing_count(), 1u);
  }
  const v1::Alert stored = store.Unresolved().at(0);
  ASSERT_EQ(stored.state(), v1::FIRING);

  {  // Still high: FIRING again for the same id, its first firing time kept.
    clock.Set(start + absl::Seconds(30));
    StoreSink after;
    RuleEngine second(Rules(kHighLoadFor20s), &clock, &after);
    EXPECT_EQ(second.Restore(store.Unresolved(), clock.Now()).firing, 1u);
    EXPECT_THAT(after.changes, SizeIs(0));
    ASSERT_THAT(second.ActiveAlerts(), SizeIs(1));
    EXPECT_EQ(second.ActiveAlerts()[0].state(), v1::STALE);
    EXPECT_EQ(second.ActiveAlerts()[0].labels().at("stale_reason"), "the controller restarted");
    HoldHighLoad(second, clock, start, 31, 31);
    ASSERT_THAT(after.changes, SizeIs(1));
    EXPECT_EQ(after.changes[0].state(), v1::FIRING);
    EXPECT_EQ(after.changes[0].id(), stored.id());
    EXPECT_EQ(after.changes[0].fired_unix_ms(), stored.fired_unix_ms());
    EXPECT_EQ(after.changes[0].labels().count("stale_reason"), 0u);
  }
  {  // Back to normal: RESOLVED for the same id.
    clock.Set(start + absl::Seconds(30));
    StoreSink after;
    RuleEngine second(Rules(kHighLoadFor20s), &clock, &after);
    second.Restore(store.Unresolved(), clock.Now());
    second.OnConnected("web-1", {{"role", "api"}});
    FakeAgent agent("web-1", &second, &clock);
    agent.Gauge("host_load1", 1);
    ASSERT_THAT(after.changes, SizeIs(1));
    EXPECT_EQ(after.changes[0].state(), v1::RESOLVED);
    EXPECT_EQ(after.changes[0].id(), stored.id());
    EXPECT_THAT(second.ActiveAlerts(), SizeIs(0));
  }
  {  // Its agent never comes back: stale, then resolved after stale_resolve_after.
    clock.Set(start + absl::Seconds(30));
    StoreSink after;
    RuleEngine second(Rules(kHighLoadFor20s), &clock, &after,
                      RuleEngine::Options{.stale_resolve_after = absl::Minutes(10)});
    second.Restore(store.Unresolved(), clock.Now());
    clock.Advance(absl::Minutes(9));
    second.Tick();
    EXPECT_THAT(after.changes, SizeIs(0));
    clock.Advance(absl::Minutes(1));
    second.Tick();
    ASSERT_THAT(after.changes, SizeIs(1));
    EXPECT_EQ(after.changes[0].state(), v1::RESOLVED);
    EXPECT_EQ(after.changes[0].id(), stored.id());
    EXPECT_THAT(after.changes[0].labels().at("resolved_reason"), HasSubstr("stale for 10m"));
  }
}

// Records as an earlier version left them: no key_labels, no evaluated_unix_ms, one stale copy
// per restart.
v1::Alert OldCopy(const std::string& id, int64_t active_since_ms, v1::AlertState state) {
  v1::Alert a;
  a.set_id(id);
  a.set_rule("RootDisk");
  a.set_agent_id("db-1");
  a.set_source("rules");
  a.set_state(state);
  a.set_active_since_unix_ms(active_since_ms);
  a.set_fired_unix_ms(active_since_ms);
  (*a.mutable_labels())["mount"] = "/";
  (*a.mutable_labels())["role"] = "db";
  if (state == v1::STALE) {
    (*a.mutable_labels())["stale_reason"] = "the controller restarted";
  }
  return a;
}

TEST(RuleEngineRestore, CopiesOfOneAlertCollapseIntoTheNewest) {
  SimulatedClock clock;
  const int64_t t = clock.NowUnixMillis();
  constexpr char kRules[] = R"(rules:
  - alert: RootDisk
    expr: host_disk_used_ratio > 0.8
  - alert: HighLoad
    expr: host_load1 > 4
)";
  std::vector<v1::Alert> stored = {OldCopy("alert-a", t - 30'000, v1::STALE),
                                   OldCopy("alert-c", t - 10'000, v1::FIRING),
                                   OldCopy("alert-b", t - 20'000, v1::STALE)};
  // The same alert on another mount is another alert.
  stored.push_back(OldCopy("alert-other", t - 40'000, v1::STALE));
  (*stored.back().mutable_labels())["mount"] = "/data";
  // A rule that is gone.
  stored.push_back(OldCopy("alert-gone", t - 40'000, v1::FIRING));
  stored.back().set_rule("NoSuchRule");
  // Alertmanager's alerts and resolved ones are not the engine's.
  stored.push_back(OldCopy("alert-am", t, v1::FIRING));
  stored.back().set_source("alertmanager");

  StoreSink sink;
  RuleEngine engine(Rules(kRules), &clock, &sink);
  RuleEngine::Restoration r = engine.Restore(stored, clock.Now());
  EXPECT_EQ(r.superseded, 2u);
  EXPECT_EQ(r.orphaned, 1u);
  EXPECT_EQ(r.firing, 2u);
  std::map<std::string, std::string> reasons;
  for (const v1::Alert& change : sink.changes) {
    EXPECT_EQ(change.state(), v1::RESOLVED) << change.id();
    reasons[change.id()] = change.labels().at("resolved_reason");
  }
  EXPECT_EQ(reasons, (std::map<std::string, std::string>{
                         {"alert-a", "superseded by alert-c"},
                         {"alert-b", "superseded by alert-c"},
                         {"alert-gone",
                          "rule NoSuchRule is no longer loaded (the controller "
                          "restarted without it)"}}));

  // Data returns: the survivor fires again under its own id, and it is the only one.
  sink.changes.clear();
  engine.OnConnected("db-1", {{"role", "db"}});
  FakeAgent agent("db-1", &engine, &clock);
  agent.Gauge("host_disk_used_ratio", 0.9, {{"mount", "/"}});
  ASSERT_THAT(sink.changes, SizeIs(1));
  EXPECT_EQ(sink.changes[0].id(), "alert-c");
  EXPECT_EQ(sink.changes[0].state(), v1::FIRING);
  EXPECT_THAT(sink.changes[0].key_labels(), ElementsAre("mount"));
  std::vector<std::string> active;
  for (const v1::Alert& alert : engine.ActiveAlerts()) {
    active.push_back(alert.id());
  }
  EXPECT_THAT(active, ::testing::UnorderedElementsAre("alert-c", "alert-other"));
}

TEST(RuleEngineRestore, OldCopyAndNewRecordOfOneAlertCollapseWhenTheAgentConnects) {
  SimulatedClock clock;
  const int64_t t = clock.NowUnixMillis();
  v1::Alert current = OldCopy("alert-new", t - 5'000, v1::FIRING);
  current.set_evaluated_unix_ms(t - 1'000);
  current.add_key_labels("mount");
  StoreSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: RootDisk
    expr: host_disk_used_ratio > 0.8
)"),
                    &clock, &sink);
  engine.Restore({OldCopy("alert-old", t - 60'000, v1::STALE), current}, clock.Now());
  EXPECT_THAT(sink.changes, SizeIs(0));  // told apart only by the agent's labels
  engine.OnConnected("db-1", {{"role", "db"}});
  ASSERT_THAT(sink.changes, SizeIs(1));
  EXPECT_EQ(sink.changes[0].id(), "alert-old");
  EXPECT_EQ(sink.changes[0].labels().at("resolved_reason"), "superseded by alert-new");
  ASSERT_THAT(engine.ActiveAlerts(), SizeIs(1));
  EXPECT_EQ(engine.ActiveAlerts()[0].id(), "alert-new");
}

TEST(RuleEngineRestore, FleetWideAlertWaitsForItsMembersAndFiresAgain) {
  SimulatedClock clock;
  StoreSink store;
  constexpr char kRules[] = R"(rules:
  - alert: LowThroughput
    expr: sum by (service) (nginx_requests_per_second) < 100
)";
  const RuleEngine::Options options{.aggregate_every = absl::ZeroDuration()};
  {
    RuleEngine first(Rules(kRules), &clock, &store, options);
    first.OnConnected("a", {{"service", "rag"}});
    FakeAgent a("a", &first, &clock);
    a.Gauge("nginx_requests_per_second", 60);
    ASSERT_EQ(first.firing_count(), 1u);
  }
  const v1::Alert stored = store.Unresolved().at(0);
  EXPECT_THAT(stored.key_labels(), ElementsAre("service"));

  clock.Advance(absl::Seconds(5));
  StoreSink after;
  RuleEngine second(Rules(kRules), &clock, &after, options);
  second.Restore(store.Unresolved(), clock.Now());
  clock.Advance(absl::Seconds(1));
  second.Tick();  // no member yet: not judged on nothing
  EXPECT_THAT(after.changes, SizeIs(0));
  second.OnConnected("a", {{"service", "rag"}});
  FakeAgent a("a", &second, &clock);
  a.Gauge("nginx_requests_per_second", 70);
  ASSERT_THAT(after.changes, SizeIs(1));
  EXPECT_EQ(after.changes[0].state(), v1::FIRING);
  EXPECT_EQ(after.changes[0].id(), stored.id());
}

TEST(RuleEngineRestore, RepeatedRestartsKeepOneAlertThatFiresOnSchedule) {
  // A restart every 8 s, each a few seconds down: the 20 s timer still ends at 20 s.
  SimulatedClock clock;
  StoreSink store;
  const absl::Time start = clock.Now();
  int second = 0;
  for (int run = 0; run < 6; ++run) {
    RuleEngine engine(Rules(kHighLoadFor20s), &clock, &store);
    clock.Set(start + absl::Seconds(second));
    engine.Restore(store.Unresolved(), clock.Now());
    HoldHighLoad(engine, clock, start, second, second + 5);
    second += 8;  // down for 2 s
  }
  std::set<std::string> ids;
  int64_t fired = 0;
  for (const v1::Alert& change : store.changes) {
    ids.insert(change.id());
    if (change.state() == v1::FIRING && fired == 0) {
      fired = change.fired_unix_ms();
    }
  }
  EXPECT_THAT(ids, SizeIs(1));
  // The third run's sample at 20 s: 20 s after the first, not 20 s after any restart.
  EXPECT_EQ(fired, absl::ToUnixMillis(start + absl::Seconds(20)));
  ASSERT_THAT(store.Unresolved(), SizeIs(1));
  EXPECT_EQ(store.Unresolved()[0].state(), v1::FIRING);
}

// ---- rate() and irate() in the engine ----

// Samples once a second: the rule's value is the mean of the last minute's samples.
TEST(RuleEngineRate, PerAgentAverageOverTheRange) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: Busy
    expr: rate(nginx_requests_per_second[1m]) > 100
)"),
                    &clock, &sink);
  FakeAgent agent("api-1", &engine, &clock);
  for (int s = 0; s < 90; ++s) {
    clock.Advance(absl::Seconds(1));
    agent.Gauge("nginx_requests_per_second", 50);
  }
  EXPECT_THAT(sink.changes, SizeIs(0));
  // A burst of 200/s: the mean crosses 100 after about a third of the minute, not at once.
  int fired_after = 0;
  for (int s = 1; s <= 90 && sink.changes.empty(); ++s) {
    clock.Advance(absl::Seconds(1));
    agent.Gauge("nginx_requests_per_second", 200);
    fired_after = s;
  }
  ASSERT_THAT(sink.changes, SizeIs(1));
  EXPECT_EQ(sink.changes[0].state, v1::FIRING);
  // Exactly: 50 * (60 - k) + 200 * k > 100 * 60 from k = 21; the window may be 2 s short.
  EXPECT_GE(fired_after, 20);
  EXPECT_LE(fired_after, 21);
  EXPECT_GT(sink.changes[0].value, 100);
  EXPECT_LT(sink.changes[0].value, 106);
  // The average reaches 200 once the whole range holds the burst.
  for (int s = 0; s < 60; ++s) {
    clock.Advance(absl::Seconds(1));
    agent.Gauge("nginx_requests_per_second", 200);
  }
  ASSERT_THAT(engine.ActiveAlerts(), SizeIs(1));
  EXPECT_EQ(engine.ActiveAlerts()[0].value(), 200);
  EXPECT_EQ(engine.ActiveAlerts()[0].state(), v1::FIRING);
}

// Missing rounds are left out, not counted as zero; late samples count at their own time;
// samples older than the range never fire the rule.
TEST(RuleEngineRate, GapsAndLateSamples) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: Busy
    expr: rate(nginx_requests_per_second[1m]) > 140
)"),
                    &clock, &sink);
  FakeAgent agent("api-1", &engine, &clock);
  const absl::Time t0 = clock.Now();
  for (int s = 0; s < 10; ++s) {
    clock.Set(t0 + absl::Seconds(s));
    agent.Gauge("nginx_requests_per_second", 300);
  }
  // 20 s without a round, then 10 s of nothing served.
  for (int s = 30; s < 40; ++s) {
    clock.Set(t0 + absl::Seconds(s));
    agent.Gauge("nginx_requests_per_second", 0);
  }
  // (10 x 300 + 10 x 0) / 20 = 150: the gap is not read as 20 s of zero (that would be 100).
  ASSERT_THAT(sink.changes, SizeIs(1));
  EXPECT_EQ(sink.changes[0].state, v1::FIRING);
  ASSERT_THAT(engine.ActiveAlerts(), SizeIs(1));
  EXPECT_EQ(engine.ActiveAlerts()[0].value(), 150);
  clock.Set(t0 + absl::Seconds(40));
  agent.Gauge("nginx_requests_per_second", 0);
  ASSERT_THAT(engine.ActiveAlerts(), SizeIs(1));
  EXPECT_NEAR(engine.ActiveAlerts()[0].value(), 3000 / 21.0, 1e-9);
  clock.Set(t0 + absl::Seconds(41));
  agent.Gauge("nginx_requests_per_second", 0);  // 3000 / 22 = 136: resolved
  ASSERT_THAT(sink.changes, SizeIs(2));
  EXPECT_EQ(sink.changes[1].state, v1::RESOLVED);

  // A replay of 4 rounds measured 20-17 s ago, delivered now in one batch, older than the
  // series' newest point: each counts in its own bucket. (3000 + 4 x 600) / 27 = 200.
  clock.Set(t0 + absl::Seconds(42));
  agent.Samples("nginx_requests_per_second", {{t0 + absl::Seconds(22), 600},
                                              {t0 + absl::Seconds(23), 600},
                                              {t0 + absl::Seconds(24), 600},
                                              {t0 + absl::Seconds(25), 600},
                                              {t0 + absl::Seconds(42), 0}});
  ASSERT_THAT(sink.changes, SizeIs(3));
  EXPECT_EQ(sink.changes[2].state, v1::FIRING);
  EXPECT_NEAR(sink.changes[2].value, 5400 / 27.0, 1e-9);
  // A replay from before the range: never counts, never fires.
  clock.Set(t0 + absl::Seconds(300));
  std::vector<std::pair<absl::Time, double>> old;
  for (int s = 100; s < 200; ++s) {
    old.emplace_back(t0 + absl::Seconds(s), 10'000);
  }
  old.emplace_back(t0 + absl::Seconds(300), 1);
  agent.Samples("nginx_requests_per_second", old);
  ASSERT_THAT(sink.changes, SizeIs(4));
  EXPECT_EQ(sink.changes[3].state, v1::RESOLVED);
  EXPECT_EQ(sink.changes[3].value, 1);
}

// `for:` is held on the average, in telemetry time; a dip of the average ends a pending alert.
TEST(RuleEngineRate, ForHoldsOnTheAverage) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: Busy
    expr: rate(redis_ops_per_second[30s]) > 1000
    for: 1m
)"),
                    &clock, &sink);
  FakeAgent agent("cache-1", &engine, &clock);
  for (int s = 0; s < 59; ++s) {
    clock.Advance(absl::Seconds(1));
    agent.Gauge("redis_ops_per_second", 2000);
  }
  ASSERT_THAT(sink.changes, SizeIs(::testing::Ge(1)));
  EXPECT_EQ(sink.last.state(), v1::PENDING);
  // One round of 0 leaves the average at 2000 x 29/30: still pending, still held.
  clock.Advance(absl::Seconds(1));
  agent.Gauge("redis_ops_per_second", 0);
  EXPECT_EQ(sink.last.state(), v1::PENDING);
  clock.Advance(absl::Seconds(1));
  agent.Gauge("redis_ops_per_second", 2000);
  EXPECT_EQ(sink.last.state(), v1::FIRING);
  EXPECT_EQ(engine.firing_count(), 1u);
  // Zeros: the average falls below 1000 after about half the range.
  int resolved_after = 0;
  for (int s = 1; s <= 30 && sink.last.state() != v1::RESOLVED; ++s) {
    clock.Advance(absl::Seconds(1));
    agent.Gauge("redis_ops_per_second", 0);
    resolved_after = s;
  }
  EXPECT_EQ(sink.last.state(), v1::RESOLVED);
  EXPECT_GE(resolved_after, 14);
  EXPECT_LE(resolved_after, 16);
  // Pending again, then a dip of the average before `for` ends drops it unfired.
  for (int s = 0; s < 40; ++s) {
    clock.Advance(absl::Seconds(1));
    agent.Gauge("redis_ops_per_second", 2000);
  }
  EXPECT_EQ(sink.last.state(), v1::PENDING);
  for (int s = 0; s < 20; ++s) {
    clock.Advance(absl::Seconds(1));
    agent.Gauge("redis_ops_per_second", 0);
  }
  EXPECT_EQ(sink.last.state(), v1::RESOLVED);
  EXPECT_EQ(sink.last.fired_unix_ms(), 0);
}

// Across agents: each agent's average, summed per group; an agent whose series stops reporting
// leaves the sum once its samples are older than the range.
TEST(RuleEngineRate, AggregatedAcrossAgentsAndSilentSeriesDropOut) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: LowTraffic
    expr: sum by (service) (rate(nginx_requests_per_second[1m])) < 100
  - alert: HotService
    expr: sum by (service) (rate(nginx_requests_per_second{role="api"}[1m])) > 3
)"),
                    &clock, &sink, RuleEngine::Options{.aggregate_every = absl::ZeroDuration()});
  engine.OnConnected("a", {{"service", "rag"}, {"role", "api"}});
  engine.OnConnected("b", {{"service", "rag"}, {"role", "api"}});
  engine.OnConnected("c", {{"service", "auth"}, {"role", "worker"}});
  FakeAgent a("a", &engine, &clock), b("b", &engine, &clock), c("c", &engine, &clock);
  auto state_of = [&](const std::string& rule) {
    const Change* found = nullptr;
    for (const Change& ch : sink.changes) {
      if (ch.rule == rule) {
        found = &ch;
      }
    }
    return found;
  };
  for (int s = 0; s < 60; ++s) {
    clock.Advance(absl::Seconds(1));
    a.Gauge("nginx_requests_per_second", s % 2 == 0 ? 40 : 80);  // averages 60
    b.Gauge("nginx_requests_per_second", 60);
    c.Gauge("nginx_requests_per_second", 500);
  }
  // rag: 60 + 60 = 120, not low; auth: 500. HotService: rag is above 3 (c is no api). (Rag was
  // low for the one batch that had only a's first sample.)
  const std::vector<v1::Alert> active = engine.ActiveAlerts();
  ASSERT_THAT(active, SizeIs(1));
  EXPECT_EQ(active[0].rule(), "HotService");
  EXPECT_EQ(active[0].state(), v1::FIRING);
  EXPECT_EQ(active[0].labels().at("service"), "rag");
  EXPECT_NEAR(active[0].value(), 120, 0.5);  // a's alternation: 59 or 60 samples in the window
  sink.changes.clear();
  // b's nginx series stops (the agent stays connected); a keeps going.
  const absl::Time b_last = clock.Now();
  while (clock.Now() < b_last + absl::Seconds(57)) {
    clock.Advance(absl::Seconds(1));
    a.Gauge("nginx_requests_per_second", 60);
    engine.Tick();
  }
  EXPECT_EQ(state_of("LowTraffic"), nullptr);  // b's last samples still count
  while (clock.Now() < b_last + absl::Seconds(61)) {
    clock.Advance(absl::Seconds(1));
    a.Gauge("nginx_requests_per_second", 60);
    engine.Tick();
  }
  const Change* low = state_of("LowTraffic");
  ASSERT_NE(low, nullptr);
  EXPECT_EQ(low->state, v1::FIRING);
  EXPECT_EQ(low->value, 60);  // a alone
  EXPECT_EQ(sink.last.labels().at("service"), "rag");
  // Everyone stops: the groups have no member left and their alerts resolve; no empty group
  // is judged as a sum of 0.
  clock.Advance(absl::Seconds(61));
  engine.Tick();
  EXPECT_THAT(engine.ActiveAlerts(), SizeIs(0));
  for (const Change& ch : sink.changes) {
    EXPECT_NE(ch.value, 0) << ch.rule;
  }
}

TEST(RuleEngineRate, IrateIsTheNewestSampleWithinTheRange) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: Spike
    expr: irate(app_log_errors_per_second[20s]) > 5
  - alert: FleetSpike
    expr: max(irate(app_log_errors_per_second[20s])) > 5
)"),
                    &clock, &sink, RuleEngine::Options{.aggregate_every = absl::ZeroDuration()});
  FakeAgent agent("api-1", &engine, &clock);
  agent.Gauge("app_log_errors_per_second", 1, {{"module", "billing"}});
  EXPECT_THAT(sink.changes, SizeIs(0));
  clock.Advance(absl::Seconds(1));
  agent.Gauge("app_log_errors_per_second", 9, {{"module", "billing"}});
  ASSERT_THAT(sink.changes, SizeIs(2));
  EXPECT_EQ(sink.changes[0].value, 9);
  EXPECT_EQ(sink.changes[1].value, 9);
  // A sample measured before the range, delivered now: never fires.
  clock.Advance(absl::Seconds(1));
  agent.Gauge("app_log_errors_per_second", 0, {{"module", "billing"}});
  ASSERT_THAT(sink.changes, SizeIs(4));  // both resolved
  agent.GaugeAt(clock.Now() + absl::Seconds(10) - absl::Minutes(1), "app_log_errors_per_second", 50,
                {{"module", "auth"}});
  EXPECT_THAT(sink.changes, SizeIs(4));
  // The series goes silent: the fleet-wide max forgets it after the range.
  clock.Advance(absl::Seconds(1));
  agent.Gauge("app_log_errors_per_second", 7, {{"module", "billing"}});
  ASSERT_THAT(sink.changes, SizeIs(6));
  clock.Advance(absl::Seconds(21));
  engine.Tick();
  ASSERT_THAT(sink.changes, SizeIs(7));
  EXPECT_EQ(sink.changes[6].rule, "FleetSpike");
  EXPECT_EQ(sink.changes[6].state, v1::RESOLVED);
}

// A scraped counter is read by rate() only on agents that declare it as a per-second rate.
TEST(RuleEngineRate, ScrapedMetricOnlyWhereDeclaredARate) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: AppBusy
    expr: rate(app_http_requests_total[1m]) > 10
)"),
                    &clock, &sink);
  engine.OnConnected("counter", {}, {"app_http_requests_total"});
  engine.OnConnected("gauge", {}, {});
  FakeAgent counter("counter", &engine, &clock), gauge("gauge", &engine, &clock);
  counter.Gauge("app_http_requests_total", 50);
  gauge.Gauge("app_http_requests_total", 50);
  ASSERT_THAT(sink.changes, SizeIs(1));
  EXPECT_EQ(sink.changes[0].agent, "counter");
  EXPECT_EQ(engine.rate_usage().series, 1u);
  // The agent reconnects declaring it a rate now.
  engine.OnConnected("gauge", {}, {"app_http_requests_total"});
  clock.Advance(absl::Seconds(1));
  gauge.Gauge("app_http_requests_total", 50);
  ASSERT_THAT(sink.changes, SizeIs(2));
  EXPECT_EQ(sink.changes[1].agent, "gauge");
}

// Memory: only series a rate() rule reads hold windows, one per distinct range whatever the
// number of rules and samples, and they go with the agent's series.
TEST(RuleEngineRate, WindowsOnlyForSeriesARateRuleReadsBoundedAndFreed) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: A
    expr: rate(nginx_requests_per_second{role="api"}[5m]) > 1e9
  - alert: B
    expr: sum(rate(nginx_requests_per_second[5m])) > 1e9
  - alert: C
    expr: rate(nginx_requests_per_second[1m]) > 1e9
  - alert: D
    expr: irate(redis_ops_per_second[1m]) > 1e9
  - alert: E
    expr: host_cpu_usage_ratio > 2
)"),
                    &clock, &sink);
  engine.OnConnected("api", {{"role", "api"}});
  FakeAgent api("api", &engine, &clock);
  for (int s = 0; s < 1000; ++s) {
    clock.Advance(absl::Milliseconds(250));
    api.Gauge("nginx_requests_per_second", s);
    api.Gauge("redis_ops_per_second", s);
    api.Gauge("host_cpu_usage_ratio", 0.5);
  }
  const RuleEngine::RateUsage usage = engine.rate_usage();
  EXPECT_EQ(usage.series, 1u);   // nginx only: irate and plain rules keep nothing
  EXPECT_EQ(usage.windows, 2u);  // 5m (shared by A and B) and 1m
  EXPECT_LE(usage.bytes, 2 * sizeof(RateWindow) + 64);
  EXPECT_LE(sizeof(RateWindow), 400u);
  EXPECT_THAT(sink.changes, SizeIs(0));
  api.Evict();
  EXPECT_EQ(engine.rate_usage().series, 0u);
}

// A reload that keeps a range keeps its samples; a new range starts empty.
TEST(RuleEngineRate, ReloadKeepsTheWindowsOfRangesStillRead) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: Busy
    expr: rate(nginx_requests_per_second[1m]) > 1000
)"),
                    &clock, &sink);
  FakeAgent agent("api-1", &engine, &clock);
  for (int s = 0; s < 30; ++s) {
    clock.Advance(absl::Seconds(1));
    agent.Gauge("nginx_requests_per_second", s < 15 ? 300 : 100);  // averages 200
  }
  engine.ReplaceRules(Rules(R"(rules:
  - alert: Busy
    expr: rate(nginx_requests_per_second[1m]) > 150
  - alert: Recent
    expr: rate(nginx_requests_per_second[10s]) > 150
)"));
  clock.Advance(absl::Seconds(1));
  agent.Gauge("nginx_requests_per_second", 100);
  ASSERT_THAT(sink.changes, SizeIs(1));
  EXPECT_EQ(sink.changes[0].rule, "Busy");
  EXPECT_NEAR(sink.changes[0].value, (15 * 300 + 16 * 100) / 31.0, 1e-9);
}

// ---- fleet-wide quantiles, division of aggregates, and rule labels ----

TEST(RuleParse, FleetWideQuantileForms) {
  auto e = ParseExpression(R"(p95 by (service) (nginx_request_duration_seconds{role="api"}) > 1)");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->aggregation, Aggregation::kQuantile);
  EXPECT_TRUE(e->fleet_wide());
  EXPECT_EQ(e->quantile, 0.95);
  EXPECT_THAT(e->by, ElementsAre("service"));
  EXPECT_EQ(e->metric, "nginx_request_duration_seconds");
  ASSERT_THAT(e->matchers, SizeIs(1));
  EXPECT_EQ(e->matchers[0].value, "api");
  EXPECT_FALSE(e->denominator.has_value());
  EXPECT_EQ(e->threshold, 1);

  // The whole fleet as one group; any two digits.
  auto whole = ParseExpression("p99 by () (nginx_request_duration_seconds) > 2");
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->aggregation, Aggregation::kQuantile);
  EXPECT_THAT(whole->by, SizeIs(0));
  EXPECT_EQ(whole->quantile, 0.99);
  auto p42 = ParseExpression("p42 by (service, env) (nginx_request_duration_seconds) > 2");
  ASSERT_TRUE(p42.ok()) << p42.status();
  EXPECT_EQ(p42->quantile, 0.42);
  EXPECT_THAT(p42->by, ElementsAre("service", "env"));

  // The per-agent form keeps its meaning.
  auto per_agent = ParseExpression("p95(nginx_request_duration_seconds) > 2");
  ASSERT_TRUE(per_agent.ok()) << per_agent.status();
  EXPECT_EQ(per_agent->aggregation, Aggregation::kNone);
  EXPECT_EQ(per_agent->quantile, 0.95);

  // A scraped histogram (a name outside the schema) is taken as one.
  auto scraped = ParseExpression("p90 by (job) (http_request_duration_seconds) > 0.5");
  ASSERT_TRUE(scraped.ok()) << scraped.status();
  EXPECT_TRUE(scraped->scraped);
}

TEST(RuleParse, DivisionOfAggregates) {
  auto e = ParseExpression(
      "sum(rate(app_log_errors_per_second[5m])) / sum(rate(nginx_requests_per_second[5m])) > "
      "0.05");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->aggregation, Aggregation::kSum);
  EXPECT_EQ(e->metric, "app_log_errors_per_second");
  EXPECT_EQ(e->range_function, RangeFunction::kRate);
  ASSERT_TRUE(e->denominator.has_value());
  EXPECT_EQ(e->denominator->aggregation, Aggregation::kSum);
  EXPECT_EQ(e->denominator->metric, "nginx_requests_per_second");
  EXPECT_EQ(e->denominator->range, absl::Minutes(5));
  EXPECT_EQ(e->op, Comparison::kGreater);
  EXPECT_EQ(e->threshold, 0.05);
  EXPECT_THAT(e->operands(), SizeIs(2));

  // Same labels in another order; a quantile on either side; the trailing `by` form.
  auto mixed = ParseExpression(
      "p99 by (service, env) (nginx_request_duration_seconds) / "
      "avg(p50(nginx_request_duration_seconds)) by (env, service) >= 3");
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  EXPECT_EQ(mixed->aggregation, Aggregation::kQuantile);
  EXPECT_EQ(mixed->denominator->aggregation, Aggregation::kAvg);
  EXPECT_EQ(mixed->denominator->quantile, 0.5);
  EXPECT_THAT(mixed->denominator->by, ElementsAre("env", "service"));

  // `by ()` is the whole fleet for any aggregation, so it divides by a whole-fleet quantile.
  auto whole = ParseExpression(
      "sum by () (nginx_requests_per_second) / p95 by () (nginx_request_duration_seconds) < 1000");
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_THAT(whole->by, SizeIs(0));
  EXPECT_THAT(
      ParseExpression("sum by () (nginx_requests_per_second) by (env) < 1").status().message(),
      HasSubstr("'by' is given twice"));
}

TEST(RuleParse, FleetWideQuantileAndDivisionErrorsSayWhatAndWhere) {
  auto message = [](absl::string_view text) {
    return std::string(ParseExpression(text).status().message());
  };
  // The metric is named at its own column.
  EXPECT_EQ(message("p95 by (service) (host_memory_used_ratio) > 0.5"),
            "'host_memory_used_ratio' is a gauge; quantiles apply to histograms only (column 19)");
  EXPECT_EQ(message("p95 by (service) (rate(nginx_requests_per_second[5m])) > 1"),
            "pNN by (...) merges histograms: write the histogram's selector itself, not "
            "rate(...) (column 19)");
  EXPECT_THAT(message("p95 by (service) (nginx_request_duration_secs) > 1"),
              HasSubstr("(column 19)"));
  EXPECT_THAT(message("p95 by (service) nginx_request_duration_seconds > 1"),
              HasSubstr("expected '(' and a histogram selector after pNN by (...) (column 18)"));
  EXPECT_THAT(message("p95 by (service) (nginx_request_duration_seconds > 1"),
              HasSubstr("expected ')' to close pNN by (...) (...) (column 50)"));
  EXPECT_THAT(message("p95 by service (nginx_request_duration_seconds) > 1"),
              HasSubstr("expected '(' after 'by' (column 8)"));
  EXPECT_THAT(message("max(p95 by (service) (nginx_request_duration_seconds)) > 1"),
              HasSubstr("p95 by (...) is fleet-wide already"));
  EXPECT_THAT(message("max(p95 by (service) (nginx_request_duration_seconds)) > 1"),
              HasSubstr("(column 5)"));

  // Both sides of '/' are fleet-wide, with the same labels; both lists are named.
  EXPECT_EQ(message("sum by (service) (nginx_requests_per_second) / "
                    "sum by (env, role) (nginx_requests_per_second) > 1"),
            "the two sides of '/' group by different labels: by (service) on the left, by (env, "
            "role) on the right; groups are matched one to one, so both sides need the same "
            "'by' labels (column 46)");
  EXPECT_THAT(message("p95 by () (nginx_request_duration_seconds) / "
                      "p50 by (service) (nginx_request_duration_seconds) > 2"),
              HasSubstr("by () on the left, by (service) on the right"));
  EXPECT_THAT(message("host_load1 / sum(host_load1) > 1"),
              HasSubstr("the left side of '/' is per agent"));
  EXPECT_THAT(message("host_load1 / sum(host_load1) > 1"), HasSubstr("(column 12)"));
  EXPECT_THAT(message("sum(host_load1) / host_load1 > 1"),
              HasSubstr("the right side of '/' is per agent"));
  EXPECT_THAT(message("sum(host_load1) / host_load1 > 1"), HasSubstr("(column 19)"));
  EXPECT_THAT(message("sum(host_load1) / > 1"), HasSubstr("expected a metric name (column 19)"));
  EXPECT_THAT(message("sum(host_load1) / sum(host_load1)"), HasSubstr("expected a comparison"));
  EXPECT_THAT(message("sum(host_load1) / sum(nginx_request_duration_seconds) > 1"),
              HasSubstr("is a histogram"));
}

TEST(RuleParse, RuleLabels) {
  RuleFile file = ParseRules(R"(rules:
  - alert: A
    expr: host_load1 > 4
    labels: {team: payments, page: "yes"}
  - alert: B
    expr: host_load1 > 4
    labels: {severity: SEV1}
  - alert: C
    expr: host_load1 > 4
    labels: [team]
  - alert: D
    expr: host_load1 > 4
    labels: {"1team": x}
  - alert: E
    expr: host_load1 > 4
    labels: {team: [a, b]}
)",
                             "team.yaml");
  ASSERT_THAT(file.rules, SizeIs(1));
  EXPECT_EQ(file.rules[0].labels,
            (std::map<std::string, std::string>{{"page", "yes"}, {"team", "payments"}}));
  ASSERT_THAT(file.errors, SizeIs(4));
  EXPECT_THAT(file.errors[0], HasSubstr("team.yaml:7: rule B: labels: 'severity' is set by Vigil "
                                        "(use the rule's severity:)"));
  EXPECT_THAT(file.errors[1], HasSubstr("team.yaml:10: rule C: labels: must be a map"));
  EXPECT_THAT(file.errors[2], HasSubstr("team.yaml:13: rule D: labels: label name '1team'"));
  EXPECT_THAT(file.errors[3], HasSubstr("team.yaml:16: rule E: labels: labels.team must be a "
                                        "single value"));
}

LogHistogram Constant(double seconds, int n) {
  LogHistogram h;
  h.Add(seconds, static_cast<uint64_t>(n));
  return h;
}

// The fleet-wide p95 is the quantile of the merged histograms: here a busy fast agent and a quiet
// slow one, where the mean of the two per-agent p95s says otherwise.
TEST(RuleEngineFleetQuantile, IsTheQuantileOfTheMergeNotTheMeanOfQuantiles) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: FleetP95
    expr: p95 by () (nginx_request_duration_seconds) > 1.5
  - alert: MeanOfP95s
    expr: avg(p95(nginx_request_duration_seconds)) > 1.5
)"),
                    &clock, &sink, RuleEngine::Options{.aggregate_every = absl::ZeroDuration()});
  FakeAgent a("a", &engine, &clock), b("b", &engine, &clock);
  const LogHistogram fast = Constant(0.05, 900), slow = Constant(2.0, 100);
  a.Histogram("nginx_request_duration_seconds", fast);
  b.Histogram("nginx_request_duration_seconds", slow);
  LogHistogram merged = fast;
  merged.Merge(slow);
  const double expected = merged.Quantile(0.95);
  EXPECT_NEAR(expected, 2.0, 0.02);
  const double mean = (fast.Quantile(0.95) + slow.Quantile(0.95)) / 2;
  ASSERT_LT(mean, 1.5);  // the case where it matters

  const std::vector<v1::Alert> alerts = engine.ActiveAlerts();
  ASSERT_THAT(alerts, SizeIs(1));
  EXPECT_EQ(alerts[0].rule(), "FleetP95");
  EXPECT_EQ(alerts[0].state(), v1::FIRING);
  EXPECT_EQ(alerts[0].agent_id(), "");
  EXPECT_EQ(alerts[0].value(), expected);
}

// Random latencies over a sliding window: the value is always the quantile of every agent's
// intervals within the window, merged.
TEST(RuleEngineFleetQuantile, MatchesTheMergeOfEveryAgentsWindow) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: FleetP90
    expr: p90 by () (nginx_request_duration_seconds) > 0
    window: 10s
)"),
                    &clock, &sink, RuleEngine::Options{.aggregate_every = absl::ZeroDuration()});
  std::mt19937_64 rng(7);
  std::vector<std::unique_ptr<FakeAgent>> agents;
  std::vector<std::lognormal_distribution<double>> latency;
  for (int i = 0; i < 3; ++i) {
    agents.push_back(std::make_unique<FakeAgent>(absl::StrCat("api-", i), &engine, &clock));
    latency.emplace_back(std::log(0.05 * (i + 1)), 0.4 + 0.3 * i);
  }
  std::vector<std::pair<absl::Time, LogHistogram>> sent;
  for (int second = 0; second < 30; ++second) {
    clock.Advance(absl::Seconds(1));
    for (size_t i = 0; i < agents.size(); ++i) {
      LogHistogram h;
      for (int n = 0; n < 20 + 30 * static_cast<int>(i); ++n) {
        h.Add(latency[i](rng));
      }
      agents[i]->Histogram("nginx_request_duration_seconds", h);
      sent.emplace_back(clock.Now(), h);
    }
    LogHistogram reference;
    for (const auto& [at, h] : sent) {
      if (at > clock.Now() - absl::Seconds(10)) {
        reference.Merge(h);
      }
    }
    const std::vector<v1::Alert> alerts = engine.ActiveAlerts();
    ASSERT_THAT(alerts, SizeIs(1));
    ASSERT_EQ(alerts[0].value(), reference.Quantile(0.9)) << "second " << second;
  }
}

TEST(RuleEngineFleetQuantile, GroupsByLabelsAndMembersLeaveTheMerge) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: ServiceP95
    expr: p95 by (service) (nginx_request_duration_seconds{role="api"}) > 1
)"),
                    &clock, &sink, RuleEngine::Options{.aggregate_every = absl::ZeroDuration()});
  engine.OnConnected("a", {{"service", "rag"}, {"role", "api"}});
  engine.OnConnected("b", {{"service", "rag"}, {"role", "api"}});
  engine.OnConnected("c", {{"service", "auth"}, {"role", "api"}});
  engine.OnConnected("w", {{"service", "auth"}, {"role", "worker"}});
  FakeAgent a("a", &engine, &clock), b("b", &engine, &clock), c("c", &engine, &clock),
      w("w", &engine, &clock);
  a.Histogram("nginx_request_duration_seconds", Constant(0.05, 900));
  b.Histogram("nginx_request_duration_seconds", Constant(2.0, 100));
  c.Histogram("nginx_request_duration_seconds", Constant(0.2, 100));
  w.Histogram("nginx_request_duration_seconds", Constant(30.0, 100));  // not matched: a worker
  std::map<std::string, double> by_service;
  for (const v1::Alert& alert : engine.ActiveAlerts()) {
    EXPECT_EQ(alert.state(), v1::FIRING);
    EXPECT_THAT(alert.key_labels(), ElementsAre("service"));
    by_service[alert.labels().at("service")] = alert.value();
  }
  // rag merges a and b (p95 in b's slow tail); auth is c alone (the worker is not an api).
  ASSERT_EQ(by_service.size(), 1u);
  EXPECT_NEAR(by_service["rag"], 2.0, 0.02);

  // b goes away: a Tick has no fresh merge to judge (reading histograms is the ingest
  // thread's), the next batch merges a alone and the alert resolves.
  const size_t before = sink.changes.size();
  engine.OnDisconnected("b");
  clock.Advance(absl::Seconds(1));
  engine.Tick();
  EXPECT_THAT(sink.changes, SizeIs(before));
  a.Histogram("nginx_request_duration_seconds", Constant(0.05, 900));
  ASSERT_THAT(sink.changes, SizeIs(before + 1));
  EXPECT_EQ(sink.changes.back().state, v1::RESOLVED);
  EXPECT_NEAR(sink.changes.back().value, 0.05, 0.001);

  // auth turns slow: its own alert, its own value.
  c.Histogram("nginx_request_duration_seconds", Constant(3.0, 1000));
  ASSERT_EQ(sink.last.labels().at("service"), "auth");
  EXPECT_EQ(sink.last.state(), v1::FIRING);
  EXPECT_NEAR(sink.last.value(), 3.0, 0.03);
  // Its only member leaves: no member, no value, resolved at the next Tick.
  engine.OnDisconnected("c");
  engine.Tick();
  EXPECT_EQ(sink.changes.back().state, v1::RESOLVED);
  EXPECT_EQ(sink.last.labels().at("service"), "auth");
  EXPECT_THAT(engine.ActiveAlerts(), SizeIs(0));
}

TEST(RuleEngineDivision, FiresAboveTheRatioGroupByGroupAndNeverOnAZeroDenominator) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: ErrorsPerRequest
    expr: sum by (service) (app_log_errors_per_second) / sum by (service) (nginx_requests_per_second) > 0.05
)"),
                    &clock, &sink, RuleEngine::Options{.aggregate_every = absl::ZeroDuration()});
  engine.OnConnected("a", {{"service", "rag"}});
  engine.OnConnected("b", {{"service", "rag"}});
  engine.OnConnected("c", {{"service", "auth"}});
  FakeAgent a("a", &engine, &clock), b("b", &engine, &clock), c("c", &engine, &clock);
  a.Gauge("nginx_requests_per_second", 100);
  b.Gauge("nginx_requests_per_second", 100);
  a.Gauge("app_log_errors_per_second", 4);
  b.Gauge("app_log_errors_per_second", 5);  // rag: 9 / 200 = 0.045
  // auth has errors but no requests side at all: no value, no alert.
  c.Gauge("app_log_errors_per_second", 50);
  EXPECT_THAT(sink.changes, SizeIs(0));

  a.Gauge("app_log_errors_per_second", 7);  // rag: 12 / 200 = 0.06
  ASSERT_THAT(sink.changes, SizeIs(1));
  EXPECT_EQ(sink.changes[0].state, v1::FIRING);
  EXPECT_DOUBLE_EQ(sink.changes[0].value, 0.06);
  EXPECT_EQ(sink.last.labels().at("service"), "rag");
  EXPECT_EQ(sink.last.agent_id(), "");

  // Requests stop: B == 0 has no value (not +Inf above the threshold), so the alert resolves.
  a.Gauge("nginx_requests_per_second", 0);
  b.Gauge("nginx_requests_per_second", 0);
  ASSERT_THAT(sink.changes, SizeIs(2));
  EXPECT_EQ(sink.changes[1].state, v1::RESOLVED);
  // auth gets a requests side, and zero it stays quiet; 1,000 of them make 50 / 1000 = 0.05,
  // not above 0.05.
  c.Gauge("nginx_requests_per_second", 0);
  c.Gauge("nginx_requests_per_second", 1000);
  EXPECT_THAT(sink.changes, SizeIs(2));
  c.Gauge("nginx_requests_per_second", 999);
  ASSERT_THAT(sink.changes, SizeIs(3));
  EXPECT_EQ(sink.last.labels().at("service"), "auth");
  EXPECT_NEAR(sink.last.value(), 50.0 / 999, 1e-12);
}

TEST(RuleEngineDivision, QuantilesOnBothSides) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: TailRatio
    expr: p99 by () (nginx_request_duration_seconds) / p50 by () (nginx_request_duration_seconds) > 10
)"),
                    &clock, &sink, RuleEngine::Options{.aggregate_every = absl::ZeroDuration()});
  FakeAgent a("a", &engine, &clock), b("b", &engine, &clock);
  a.Histogram("nginx_request_duration_seconds", Constant(0.1, 980));
  b.Histogram("nginx_request_duration_seconds", Constant(0.5, 20));
  EXPECT_THAT(sink.changes, SizeIs(0));  // p99 / p50 = 0.5 / 0.1 = 5
  b.Histogram("nginx_request_duration_seconds", Constant(3.0, 20));
  ASSERT_THAT(sink.changes, SizeIs(1));  // b's window now holds 0.5 and 3.0: p99 is 3.0
  LogHistogram merged = Constant(0.1, 980);
  merged.Merge(Constant(0.5, 20));
  merged.Merge(Constant(3.0, 20));
  EXPECT_DOUBLE_EQ(sink.changes[0].value, merged.Quantile(0.99) / merged.Quantile(0.5));
}

TEST(RuleEngineLabels, RuleLabelsAreCopiedOntoAlertsWithoutReplacingTheirOwn) {
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(Rules(R"(rules:
  - alert: HighLoad
    expr: host_load1 > 4
    labels: {team: payments, service: from-the-rule, mount: nope}
  - alert: FleetSlow
    expr: p95 by (service) (nginx_request_duration_seconds) > 1
    labels: {team: edge, service: from-the-rule, page: "yes"}
)"),
                    &clock, &sink, RuleEngine::Options{.aggregate_every = absl::ZeroDuration()});
  engine.OnConnected("a", {{"service", "rag"}});
  FakeAgent a("a", &engine, &clock);
  a.Gauge("host_load1", 9, {{"mount", "/"}});
  ASSERT_THAT(sink.changes, SizeIs(1));
  EXPECT_EQ(sink.last.labels().at("team"), "payments");
  EXPECT_EQ(sink.last.labels().at("service"), "rag");  // the agent's own
  EXPECT_EQ(sink.last.labels().at("mount"), "/");      // the series' own
  EXPECT_THAT(sink.last.key_labels(), ElementsAre("mount"));

  a.Histogram("nginx_request_duration_seconds", Constant(2.0, 100));
  ASSERT_THAT(sink.changes, SizeIs(2));
  EXPECT_EQ(sink.last.rule(), "FleetSlow");
  EXPECT_EQ(sink.last.labels().at("team"), "edge");
  EXPECT_EQ(sink.last.labels().at("page"), "yes");
  EXPECT_EQ(sink.last.labels().at("service"), "rag");  // the group's own
  EXPECT_THAT(sink.last.key_labels(), ElementsAre("service"));
}

// A restarted controller takes back a fleet-wide quantile's alert, rule labels and all, and the
// next merge judges the same alert.
TEST(RuleEngineRestore, FleetWideQuantileAlertWithLabelsComesBack) {
  SimulatedClock clock;
  StoreSink store;
  constexpr char kRules[] = R"(rules:
  - alert: ServiceP95
    expr: p95 by (service) (nginx_request_duration_seconds) > 1
    labels: {team: edge}
)";
  const RuleEngine::Options options{.aggregate_every = absl::ZeroDuration()};
  {
    RuleEngine first(Rules(kRules), &clock, &store, options);
    first.OnConnected("a", {{"service", "rag"}});
    FakeAgent a("a", &first, &clock);
    a.Histogram("nginx_request_duration_seconds", Constant(2.0, 100));
    ASSERT_EQ(first.firing_count(), 1u);
  }
  const v1::Alert stored = store.Unresolved().at(0);
  EXPECT_THAT(stored.key_labels(), ElementsAre("service"));

  clock.Advance(absl::Seconds(5));
  StoreSink after;
  RuleEngine second(Rules(kRules), &clock, &after, options);
  const RuleEngine::Restoration restored = second.Restore(store.Unresolved(), clock.Now());
  EXPECT_EQ(restored.firing, 1u);
  EXPECT_EQ(restored.orphaned, 0u);
  second.OnConnected("a", {{"service", "rag"}});
  FakeAgent a("a", &second, &clock);
  a.Histogram("nginx_request_duration_seconds", Constant(2.5, 100));
  ASSERT_THAT(after.changes, SizeIs(1));
  EXPECT_EQ(after.changes[0].state(), v1::FIRING);
  EXPECT_EQ(after.changes[0].id(), stored.id());
  EXPECT_EQ(after.changes[0].labels().at("team"), "edge");
}

// The performance runbook's Prometheus rules, loaded verbatim (a bare list), fire through the
// engine on the nginx collector's histograms and request rates (the name map): HighLatency on
// the fleet's merged p95, LowThroughput on the fleet's summed 5-minute rate.
TEST(RuleEngine, RunbookPrometheusRulesFireOnNginxMetrics) {
  RuleFile file = ParseRules(testing::ReadFileOrEmpty(testing::SourcePath(
                                 "tests/unit/controller/fixtures/performance-runbook-rules.yaml")),
                             "perf.yaml");
  ASSERT_THAT(file.errors, SizeIs(0));
  SimulatedClock clock;
  RecordingSink sink;
  RuleEngine engine(file.rules, &clock, &sink,
                    RuleEngine::Options{.aggregate_every = absl::ZeroDuration()});
  engine.OnConnected("api-1", {{"role", "api"}});
  engine.OnConnected("api-2", {{"role", "api"}});
  FakeAgent a("api-1", &engine, &clock), b("api-2", &engine, &clock);
  auto last_of = [&](const std::string& rule) {
    const Change* found = nullptr;
    for (const Change& ch : sink.changes) {
      if (ch.rule == rule) {
        found = &ch;
      }
    }
    return found;
  };
  auto fired = [&](const std::string& rule) {
    for (const Change& ch : sink.changes) {
      if (ch.rule == rule && ch.state == v1::FIRING) {
        return true;
      }
    }
    return false;
  };
  // One second of traffic: 100 requests on each agent, `slow_on_b` of api-2's taking 3 s.
  auto second = [&](int slow_on_b, double rate_each) {
    clock.Advance(absl::Seconds(1));
    a.Gauge("nginx_requests_per_second", rate_each);
    b.Gauge("nginx_requests_per_second", rate_each);
    a.Latencies("nginx_request_duration_seconds", std::vector<double>(100, 0.05));
    std::vector<double> on_b(100 - slow_on_b, 0.05);
    on_b.insert(on_b.end(), slow_on_b, 3.0);
    b.Latencies("nginx_request_duration_seconds", on_b);
    engine.Tick();
  };
  // Six minutes with 8 % of api-2's requests slow: its own p95 is 3 s, but the fleet's is not
  // (4 % of all requests), and 120 req/s is not low.
  for (int s = 0; s < 360; ++s) {
    second(8, 60);
  }
  EXPECT_EQ(last_of("HighLatency"), nullptr);
  // (LowThroughput was pending for the first batch, which had only api-1's first sample.)
  EXPECT_FALSE(fired("LowThroughput"));
  EXPECT_THAT(engine.ActiveAlerts(), SizeIs(0));
  // 24 % of api-2's requests slow: 12 % of the fleet's. Pending once the window's share passes
  // 5 %, firing 2 minutes (the rule's `for:`) later.
  int seconds = 0;
  while ((last_of("HighLatency") == nullptr || last_of("HighLatency")->state != v1::FIRING) &&
         seconds < 600) {
    second(24, 60);
    ++seconds;
  }
  ASSERT_NE(last_of("HighLatency"), nullptr);
  EXPECT_EQ(last_of("HighLatency")->state, v1::FIRING);
  EXPECT_GE(seconds, 120);
  EXPECT_LE(seconds, 300 + 120);
  EXPECT_NEAR(last_of("HighLatency")->value, 3.0, 0.05);
  EXPECT_EQ(last_of("HighLatency")->severity, v1::SEV3);  // severity: warning
  EXPECT_FALSE(fired("LowThroughput"));
  // Traffic falls to 30 + 30 req/s: the 5-minute mean drops under 100, then 5 minutes of `for:`.
  seconds = 0;
  while ((last_of("LowThroughput") == nullptr || last_of("LowThroughput")->state != v1::FIRING) &&
         seconds < 900) {
    second(0, 30);
    ++seconds;
  }
  ASSERT_NE(last_of("LowThroughput"), nullptr);
  EXPECT_EQ(last_of("LowThroughput")->state, v1::FIRING);
  EXPECT_GE(seconds, 300);
  EXPECT_LT(last_of("LowThroughput")->value, 100);
}

TEST(HistogramWindowTest, TheLongestQuantileWindowOfTheRulesAndNeverUnderAMinute) {
  EXPECT_EQ(HistogramWindowFor(DefaultRules()), kMinHistogramWindow);
  RuleFile file = ParseRules(R"yaml(rules:
  - alert: SlowFleet
    expr: p95 by () (nginx_request_duration_seconds) > 2
    window: 5m
  - alert: SlowHere
    expr: p99(nginx_request_duration_seconds) > 5
    window: 2m
  - alert: Quiet
    expr: sum(rate(nginx_requests_per_second[5m])) < 100
    window: 4m
)yaml",
                             "w.yaml");
  ASSERT_TRUE(file.errors.empty()) << file.errors[0];
  EXPECT_EQ(HistogramWindowFor(file.rules), absl::Minutes(5));
  file.rules.erase(file.rules.begin());
  EXPECT_EQ(HistogramWindowFor(file.rules), absl::Minutes(2)) << "a rule without a quantile";
}

}  // namespace
}  // namespace vigil::controller
