// Prometheus rule files: the PromQL subset's translation into Vigil's grammar, groups, labels
// and annotations, and every unsupported construct named with file, line and column.
#include "controller/rules/prometheus_rules.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controller/rules/rule.h"
#include "tests/support/process.h"

namespace vigil::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::SizeIs;
using ::testing::StartsWith;

// The translation's text, or the error and its byte offset.
std::string Translated(absl::string_view promql, const PromNameMap& names = DefaultPromNameMap()) {
  PromTranslation t = TranslatePromQL(promql, names);
  if (!t.status.ok()) {
    return absl::StrCat("error at ", t.error_offset, ": ", t.status.message());
  }
  EXPECT_EQ(t.offsets.size(), t.vigil.size());
  return t.vigil;
}

std::string RunbookSnippet() {
  return testing::ReadFileOrEmpty(
      testing::SourcePath("tests/unit/controller/fixtures/performance-runbook-rules.yaml"));
}

TEST(PromQLTranslation, TheRunbooksRulesBecomeVigilsMergedQuantileAndFleetRate) {
  // The performance runbook's two alerts, as written there.
  PromTranslation latency = TranslatePromQL(
      "histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[5m])) by (le)) > 2",
      DefaultPromNameMap());
  ASSERT_TRUE(latency.status.ok()) << latency.status;
  EXPECT_EQ(latency.vigil, "p95 by () (nginx_request_duration_seconds) > 2");
  ASSERT_TRUE(latency.window.has_value());
  EXPECT_EQ(*latency.window, absl::Minutes(5));
  EXPECT_THAT(latency.renamed,
              ElementsAre(Pair("http_request_duration_seconds", "nginx_request_duration_seconds")));

  PromTranslation throughput =
      TranslatePromQL("sum(rate(http_requests_total[5m])) < 100", DefaultPromNameMap());
  ASSERT_TRUE(throughput.status.ok()) << throughput.status;
  EXPECT_EQ(throughput.vigil, "sum(rate(nginx_requests_per_second[5m])) < 100");
  EXPECT_FALSE(throughput.window.has_value());
  // The translation parses as Vigil's own LowThroughput.
  auto parsed = ParseExpression(throughput.vigil);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->aggregation, Aggregation::kSum);
  EXPECT_EQ(parsed->range_function, RangeFunction::kRate);
  EXPECT_EQ(parsed->metric, "nginx_requests_per_second");
  EXPECT_EQ(parsed->threshold, 100);
}

TEST(PromQLTranslation, SubsetForms) {
  // `by` before the parenthesis, other labels kept, matchers carried over.
  EXPECT_EQ(Translated("histogram_quantile(0.99, sum by (le, service) "
                       "(rate(http_request_duration_seconds_bucket{role=\"api\"}[1m]))) > 1.5"),
            "p99 by (service) (nginx_request_duration_seconds{role=\"api\"}) > 1.5");
  EXPECT_EQ(Translated("histogram_quantile(0.5, sum(rate(app_latency_seconds_bucket[30s])) by "
                       "(service, le)) >= 0.2"),
            "p50 by (service) (app_latency_seconds) >= 0.2");
  // Without sum: a per-series quantile.
  EXPECT_EQ(Translated("histogram_quantile(0.9, rate(app_latency_seconds_bucket{env='prod'}[2m]))"
                       " > 1"),
            "p90(app_latency_seconds{env=\"prod\"}) > 1");
  EXPECT_EQ(Translated("histogram_quantile(0.05, sum by (le) (rate(app_l_bucket[1m]))) < 0.01"),
            "p05 by () (app_l) < 0.01");
  // Aggregations, with by on either side; single quotes and backquotes become Vigil's "".
  EXPECT_EQ(Translated("sum(rate(http_requests_total{job='rag-api'}[5m])) < 100"),
            "sum(rate(nginx_requests_per_second{job=\"rag-api\"}[5m])) < 100");
  EXPECT_EQ(Translated("sum(container_memory_working_set_bytes) by (pod) > 1e9"),
            "sum by (pod) (container_memory_working_set_bytes) > 1e9");
  EXPECT_EQ(Translated("avg by (service) (irate(app_jobs_total{queue=~`high|low`}[1m])) <= 2"),
            "avg by (service) (irate(app_jobs_total{queue=~\"high|low\"}[1m])) <= 2");
  EXPECT_EQ(Translated("count(app_up == 1"),
            "error at 13: expected ')' to close 'count(', "
            "found '=='");
  EXPECT_EQ(Translated("max(app_queue_length) != 0"), "max(app_queue_length) != 0");
  EXPECT_EQ(Translated("(sum by () (rate(app_a_total[1m]))) > -1"),
            "sum(rate(app_a_total[1m])) > -1");
  EXPECT_EQ(Translated("node_load1 > 4"), "node_load1 > 4");
  // Division of two aggregations.
  EXPECT_EQ(Translated("sum by (service) (rate(app_errors_total[5m])) / sum by (service) "
                       "(rate(app_requests_total[5m])) > 0.05"),
            "sum by (service) (rate(app_errors_total[5m])) / sum by (service) "
            "(rate(app_requests_total[5m])) > 0.05");
  // The runbook's error rate: the name map has no 5xx counter, so it says so...
  EXPECT_EQ(Translated("sum(rate(http_requests_total{status=~\"5..\"}[5m])) / "
                       "sum(rate(http_requests_total[5m])) > 0.001"),
            "error at 29: a matcher on 'status' is not supported on 'http_requests_total', which "
            "is read as 'nginx_requests_per_second' (the name map): that metric has no such "
            "label (the share of 5xx answers is nginx_error_ratio)");
  // ...and without the map the application's own counter is read, as agents declare it.
  EXPECT_EQ(Translated("sum(rate(http_requests_total{status=~\"5..\"}[5m])) / "
                       "sum(rate(http_requests_total[5m])) > 0.001",
                       PromNameMap{}),
            "sum(rate(http_requests_total{status=~\"5..\"}[5m])) / "
            "sum(rate(http_requests_total[5m])) > 0.001");
}

TEST(PromQLTranslation, OffsetsPointBackIntoThePromQL) {
  const std::string promql = "sum(rate(http_requests_total{job='x'}[5m])) < 100";
  PromTranslation t = TranslatePromQL(promql, DefaultPromNameMap());
  ASSERT_TRUE(t.status.ok()) << t.status;
  ASSERT_EQ(t.offsets.size(), t.vigil.size());
  // The renamed metric points at the name written; the range and the label at theirs.
  EXPECT_EQ(t.offsets[t.vigil.find("nginx_requests")], promql.find("http_requests"));
  EXPECT_EQ(t.offsets[t.vigil.find("5m")], promql.find("5m"));
  EXPECT_EQ(t.offsets[t.vigil.find("job")], promql.find("job"));
  EXPECT_EQ(t.offsets[t.vigil.find("100")], promql.find("100"));
}

TEST(PromQLTranslation, UnsupportedConstructsAreNamedAtTheirOffset) {
  struct Case {
    const char* promql;
    size_t offset;
    const char* message;
  };
  const Case kCases[] = {
      {"sum without (pod) (rate(app_a_total[5m])) > 1", 4, "'without' is not supported"},
      {"rate(app_a_total[5m] offset 5m) > 1", 21, "the 'offset' modifier"},
      {"rate(app_a_total @ 1700000000 [5m]) > 1", 17, "the '@' modifier"},
      {"max_over_time(rate(app_a_total[5m])[10m:1m]) > 1", 0,
       "function 'max_over_time' is not supported"},
      {"rate(app_a_total[5m:30s]) > 1", 19, "a subquery ([range:step]) is not supported"},
      {"sum(rate(app_a_total[5m])) / ignoring (x) sum(rate(app_b_total[5m])) > 1", 29,
       "vector matching modifier 'ignoring'"},
      {"sum(rate(app_a_total[5m])) / on (x) group_left sum(rate(app_b_total[5m])) > 1", 29,
       "vector matching modifier 'on'"},
      {"sum(rate(app_a_total[5m])) + 1 > 1", 27, "operator '+' is not supported"},
      {"app_a > 1 and app_b > 1", 10, "operator 'and' is not supported"},
      {"app_a > bool 1", 8, "the 'bool' modifier"},
      {"app_a > app_b", 8, "a comparison with 'app_b' is not supported"},
      {"app_a", 5, "an alerting rule needs a comparison"},
      {"topk(3, app_a) > 1", 0, "aggregation 'topk' is not supported"},
      {"sum(sum(app_a)) > 1", 4, "a nested aggregation"},
      {"abs(app_a) > 1", 0, "function 'abs' is not supported"},
      {"histogram_quantile(0.999, sum by (le) (rate(app_l_bucket[5m]))) > 1", 19,
       "quantile 0.999 is not a whole percentage"},
      {"histogram_quantile(1, sum by (le) (rate(app_l_bucket[5m]))) > 1", 19,
       "quantile 1 is not a whole percentage"},
      {"histogram_quantile(0.9, sum(rate(app_l_bucket[5m]))) > 1", 24, "missing 'le'"},
      {"histogram_quantile(0.9, sum by (le) (app_l_bucket)) > 1", 37,
       "histogram_quantile over 'app_l_bucket' without rate() is not supported"},
      {"histogram_quantile(0.9, avg by (le) (rate(app_l_bucket[5m]))) > 1", 24,
       "histogram_quantile over 'avg'"},
      {"histogram_quantile(0.9, sum by (le) (rate(app_l[5m]))) > 1", 42, "'app_l' is not one"},
      {"histogram_quantile(0.9, sum by (le) (rate(app_l_bucket[10m]))) > 1", 55,
       "range '10m' of histogram_quantile is the rule's window"},
      {"histogram_quantile(0.9, sum by (le) (rate(app_l_bucket{le=\"1\"}[5m]))) > 1", 55,
       "a matcher on 'le'"},
      {"sum(histogram_quantile(0.9, rate(app_l_bucket[5m]))) > 1", 4,
       "an aggregation of histogram_quantile()"},
      {"sum(rate(app_l_bucket[5m])) > 1", 9, "outside histogram_quantile() is not supported"},
      {"app_requests_total > 100", 0, "'app_requests_total' is a counter"},
      {"{job=\"x\"} > 1", 0, "a selector without a metric name"},
      {"app_a{__name__=\"b\"} > 1", 6, "a matcher on __name__"},
      {"job:rate5m > 1", 3, "names with ':'"},
      {"app_a > 1 > 2", 10, "a second comparison"},
      {"-app_a > 1", 0, "unary '-'"},
      {"app_a{x=\"a", 8, "expected a quoted value"},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.promql);
    PromTranslation t = TranslatePromQL(c.promql, DefaultPromNameMap());
    ASSERT_FALSE(t.status.ok()) << t.vigil;
    EXPECT_THAT(std::string(t.status.message()), HasSubstr(c.message));
    EXPECT_EQ(t.error_offset, c.offset) << t.status.message();
  }
}

// Every prefix and every one-byte deletion of these expressions: a translation or an error
// inside the text, never a crash; in a file, an error that still names the file and line.
TEST(PromQLTranslation, BrokenTextYieldsAnErrorInsideIt) {
  const std::string kSeeds[] = {
      "histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[5m])) by (le)) > 2",
      "sum by (service) (rate(app_errors_total{code=~'5..'}[5m])) / sum by (service) "
      "(irate(app_requests_total[5m])) >= 0.05",
      "max(app_queue{q=\"a\\\"b\",r!~`x`,}) != -1e3",
  };
  for (const std::string& valid : kSeeds) {
    for (size_t n = 0; n <= valid.size(); ++n) {
      for (const std::string& text :
           {valid.substr(0, n), n < valid.size() ? valid.substr(0, n) + valid.substr(n + 1) : ""}) {
        PromTranslation t = TranslatePromQL(text, DefaultPromNameMap());
        if (!t.status.ok()) {
          EXPECT_LE(t.error_offset, text.size()) << text;
        }
        for (const char* style : {"\"", "'"}) {
          std::string quoted;
          for (char c : text) {
            if (c == style[0] || (style[0] == '"' && c == '\\')) {
              quoted += style[0] == '"' ? '\\' : '\'';
            }
            quoted += c;
          }
          RuleFile file = ParseRules(
              absl::StrCat("- alert: A\n  expr: ", style, quoted, style, "\n"), "f.yaml");
          for (const std::string& e : file.errors) {
            EXPECT_THAT(e, StartsWith("f.yaml:")) << text;
          }
        }
      }
    }
  }
}

// A `groups:` file: labels (severity mapped, the others kept), annotations, the group interval,
// and a note per rule saying what it became.
TEST(PrometheusRuleFile, GroupsWithLabelsAndAnnotations) {
  RuleFile file = ParseRules(R"(groups:
  - name: api
    interval: 30s
    rules:
      - alert: ApiSlow
        expr: histogram_quantile(0.99, rate(http_request_duration_seconds_bucket{role="api"}[2m])) > 1.5
        for: 1m
        labels:
          severity: critical
          team: web
        annotations:
          summary: API p99 above 1.5 s
          runbook_url: https://runbooks.example/api-slow
          description: Requests are slow on {{ $labels.agent }}
      - alert: QueueDeep
        expr: max by (service) (app_celery_queue_length) >= 100
        labels: {severity: page}
        annotations: {summary: "Queue {{ $labels.service }} is deep"}
  - name: db
    rules:
      - alert: Connections
        expr: pg_connections_used_ratio > 0.95
        labels: {severity: Info, tier: data}
      - alert: Plain
        expr: host_load1 > 4
        labels: {severity: SEV1}
)",
                             "prom.yaml");
  ASSERT_THAT(file.errors, SizeIs(0)) << file.errors[0];
  ASSERT_THAT(file.rules, SizeIs(4));
  const Rule& slow = file.rules[0];
  EXPECT_EQ(slow.name, "ApiSlow");
  EXPECT_EQ(slow.source, "prom.yaml:5");
  EXPECT_EQ(slow.expr.text, "p99(nginx_request_duration_seconds{role=\"api\"}) > 1.5");
  EXPECT_EQ(slow.expr.quantile, 0.99);
  EXPECT_EQ(slow.expr.metric, "nginx_request_duration_seconds");
  EXPECT_EQ(slow.window, absl::Minutes(2));
  EXPECT_EQ(slow.for_duration, absl::Minutes(1));
  EXPECT_EQ(slow.severity, v1::SEV1);
  EXPECT_THAT(slow.labels, ElementsAre(Pair("team", "web")));
  EXPECT_EQ(slow.summary, "API p99 above 1.5 s");
  EXPECT_EQ(slow.runbook, "https://runbooks.example/api-slow");
  EXPECT_EQ(file.rules[1].severity, v1::SEV2);
  EXPECT_EQ(file.rules[1].expr.aggregation, Aggregation::kMax);
  EXPECT_TRUE(file.rules[1].expr.scraped);
  EXPECT_EQ(file.rules[1].summary, "Queue {{ $labels.service }} is deep");
  EXPECT_EQ(file.rules[2].severity, v1::SEV4);
  EXPECT_EQ(file.rules[2].summary, "Connections: pg_connections_used_ratio > 0.95");  // none given
  EXPECT_THAT(file.rules[2].labels, ElementsAre(Pair("tier", "data")));
  EXPECT_EQ(file.rules[3].severity, v1::SEV1);
  EXPECT_THAT(
      file.notes,
      ElementsAre(
          "prom.yaml:3: group api: interval 30s not used: Vigil evaluates rules as samples arrive",
          "prom.yaml:5: rule ApiSlow: translated to "
          "`p99(nginx_request_duration_seconds{role=\"api\"}) > 1.5` with window 2m; severity "
          "'critical' -> SEV1; 'http_request_duration_seconds' read as "
          "'nginx_request_duration_seconds' (name map)",
          "prom.yaml:14: rule ApiSlow: annotation 'description' dropped (a Vigil rule keeps "
          "summary and runbook_url only)",
          "prom.yaml:15: rule QueueDeep: translated to `max by (service) "
          "(app_celery_queue_length) >= 100`; severity 'page' -> SEV2; metric "
          "'app_celery_queue_length' is scraped (declared by agents), not in the built-in schema",
          "prom.yaml:18: rule QueueDeep: annotation 'summary' kept as written (Prometheus "
          "templates are not expanded)",
          "prom.yaml:21: rule Connections: translated to `pg_connections_used_ratio > 0.95`; "
          "severity 'Info' -> SEV4",
          "prom.yaml:24: rule Plain: translated to `host_load1 > 4`; severity 'SEV1' -> SEV1"));
}

TEST(PrometheusRuleFile, NameMapReplacesTheDefault) {
  // Names kept as written: the application's histogram scraped under its own name.
  RuleFile kept = ParseRules(R"(name_map: {}
groups:
  - name: g
    rules:
      - alert: Slow
        expr: histogram_quantile(0.9, rate(http_request_duration_seconds_bucket[1m])) > 1
)",
                             "kept.yaml");
  ASSERT_THAT(kept.errors, SizeIs(0)) << kept.errors[0];
  EXPECT_EQ(kept.rules[0].expr.metric, "http_request_duration_seconds");
  EXPECT_TRUE(kept.rules[0].expr.scraped);
  // Onto the prometheus collector's prefixed names.
  RuleFile prefixed = ParseRules(R"(name_map:
  http_requests_total: app_http_requests_total
groups:
  - name: g
    rules:
      - alert: Low
        expr: sum(rate(http_requests_total{status!~"5.."}[5m])) < 100
)",
                                 "prefixed.yaml");
  ASSERT_THAT(prefixed.errors, SizeIs(0)) << prefixed.errors[0];
  EXPECT_EQ(prefixed.rules[0].expr.text,
            "sum(rate(app_http_requests_total{status!~\"5..\"}[5m])) < 100");
  EXPECT_THAT(ParseRules("name_map: {a: [b]}\ngroups: []\n", "m.yaml").errors,
              ElementsAre("m.yaml:1: name_map: 'a' must map a metric name to a metric name"));
}

TEST(PrometheusRuleFile, FileShapes) {
  EXPECT_THAT(ParseRules("groups: []", "x.yaml").errors, SizeIs(0));
  EXPECT_THAT(ParseRules("groups:\n  - name: a\n  - name: a\n", "x.yaml").errors,
              ElementsAre("x.yaml:3: group a: duplicate name (first defined at x.yaml:2)"));
  EXPECT_THAT(ParseRules("groups:\n  - name: a\n    limit: 5\n", "x.yaml").errors,
              ElementsAre(HasSubstr("x.yaml:3: unknown key 'limit' in a group")));
  EXPECT_THAT(ParseRules("groups: 5\n", "x.yaml").errors,
              ElementsAre("x.yaml:1: groups must be a list of {name, rules}"));
  EXPECT_THAT(ParseRules("groups: []\nrules: []\n", "x.yaml").errors,
              ElementsAre(HasSubstr("x.yaml:2: unknown key 'rules'")));
  EXPECT_THAT(
      ParseRules("- alert: A\n  expr: app_a > 1\n- alert: A\n  expr: app_b > 1\n", "x.yaml").errors,
      ElementsAre("x.yaml:3: rule A: duplicate name (first defined at x.yaml:1): Vigil "
                  "keys alerts by rule name"));
  EXPECT_THAT(ParseRules("- just text\n", "x.yaml").errors,
              ElementsAre(StartsWith("x.yaml:1: a rule must be a map")));
}

// Every unsupported construct at its place in the file: plain, quoted and block scalars.
TEST(PrometheusRuleFile, UnsupportedConstructsGiveFileLineAndColumn) {
  RuleFile file = ParseRules(R"yaml(groups:
  - name: bad
    rules:
      - alert: Without
        expr: sum without (pod) (rate(http_requests_total[5m])) > 1
      - alert: Offset
        expr: sum(rate(app_requests_total[5m] offset 1h)) < 100
      - alert: At
        expr: "sum(rate(app_requests_total[5m] @ 1700000000)) < 100"
      - alert: Subquery
        expr: 'max(rate(app_x_total{job=''api''}[5m:1m])) > 1'
      - alert: OnModifier
        expr: |
          sum(rate(app_errors_total[5m]))
            / on (service)
          sum(rate(app_requests_total[5m])) > 0.05
      - alert: OtherFunction
        expr: >-
          increase(app_requests_total[5m])
          > 100
      - alert: OtherOperator
        expr: sum(rate(app_a_total[1m])) * 2 > 1
      - alert: HalfPercent
        expr: histogram_quantile(0.995, sum by (le) (rate(http_request_duration_seconds_bucket[5m]))) > 2
      - alert: NoLe
        expr: histogram_quantile(0.9, sum by (service) (rate(app_latency_seconds_bucket[5m]))) > 2
      - alert: NoRate
        expr: histogram_quantile(0.9, sum by (le) (app_latency_seconds_bucket)) > 2
      - alert: Escaped
        expr: "rate(app_x_total{path=\"/a\"}[5m]) > 1 unless app_y"
      - alert: Folded
        expr: sum(rate(app_a_total[5m]))
          + sum(rate(app_b_total[5m])) > 1
      - alert: TooLong
        expr: rate(app_x_total[10m]) > 1
      - alert: Typo
        expr: sum(rate(nginx_reqs_total[5m])) > 1
      - record: job:app_requests:rate5m
        expr: sum(rate(app_requests_total[5m]))
      - alert: KeepFiring
        expr: app_queue_length > 1
        keep_firing_for: 5m
      - alert: BadSeverity
        expr: app_queue_length > 1
        labels:
          severity: urgent
)yaml",
                             "bad.yaml");
  EXPECT_THAT(file.rules, SizeIs(0));
  ASSERT_THAT(file.errors, SizeIs(17));
  const std::vector<std::string> kWant = {
      "bad.yaml:5:19: rule Without: expr: 'without' is not supported",
      "bad.yaml:7:47: rule Offset: expr: the 'offset' modifier (after a range) is not supported",
      "bad.yaml:9:48: rule At: expr: the '@' modifier (after a range) is not supported",
      "bad.yaml:11:52: rule Subquery: expr: a subquery ([range:step]) is not supported",
      "bad.yaml:15:15: rule OnModifier: expr: vector matching modifier 'on' is not supported",
      "bad.yaml:19:11: rule OtherFunction: expr: function 'increase' is not supported",
      "bad.yaml:22:42: rule OtherOperator: expr: operator '*' is not supported",
      "bad.yaml:24:34: rule HalfPercent: expr: quantile 0.995 is not a whole percentage",
      "bad.yaml:26:39: rule NoLe: expr: histogram_quantile needs the buckets summed by le",
      "bad.yaml:28:52: rule NoRate: expr: histogram_quantile over 'app_latency_seconds_bucket' "
      "without rate() is not supported",
      "bad.yaml:30:55: rule Escaped: expr: operator 'unless' is not supported",
      "bad.yaml:33:11: rule Folded: expr: operator '+' is not supported",
      // Errors of Vigil's own parser, placed in the PromQL they came from.
      "bad.yaml:35:32: rule TooLong: expr: range '10m' of rate(app_x_total[10m]) is above 5m",
      "bad.yaml:37:19: rule Typo: expr: unknown metric 'nginx_reqs_total'",
      "bad.yaml:38: recording rules (record:) are not supported",
      "bad.yaml:42: unknown key 'keep_firing_for' in rule KeepFiring",
      "bad.yaml:46: rule BadSeverity: labels.severity 'urgent' is not one of critical (SEV1)",
  };
  for (size_t i = 0; i < kWant.size(); ++i) {
    EXPECT_THAT(file.errors[i], StartsWith(kWant[i]));
  }
  EXPECT_THAT(file.errors[13], HasSubstr("(translated to `sum(rate(nginx_reqs_total[5m])) > 1`)"));
}

// The performance runbook's snippet, byte for byte (a bare list, as the runbook writes it).
TEST(PrometheusRuleFile, RunbookSnippetLoadsVerbatim) {
  const std::string snippet = RunbookSnippet();
  ASSERT_THAT(snippet, HasSubstr("- alert: HighLatency"));
  RuleFile file = ParseRules(snippet, "performance-runbook-rules.yaml");
  ASSERT_THAT(file.errors, SizeIs(0)) << file.errors[0];
  ASSERT_THAT(file.rules, SizeIs(2));
  const Rule& latency = file.rules[0];
  EXPECT_EQ(latency.name, "HighLatency");
  EXPECT_EQ(latency.expr.text, "p95 by () (nginx_request_duration_seconds) > 2");
  EXPECT_EQ(latency.expr.quantile, 0.95);
  EXPECT_EQ(latency.window, absl::Minutes(5));
  EXPECT_EQ(latency.for_duration, absl::Minutes(2));
  EXPECT_EQ(latency.severity, v1::SEV3);
  EXPECT_EQ(latency.summary, "API latency is high");
  const Rule& throughput = file.rules[1];
  EXPECT_EQ(throughput.name, "LowThroughput");
  EXPECT_EQ(throughput.expr.text, "sum(rate(nginx_requests_per_second[5m])) < 100");
  EXPECT_EQ(throughput.for_duration, absl::Minutes(5));
  EXPECT_EQ(throughput.summary, "API throughput is low");
  EXPECT_THAT(file.notes,
              ElementsAre("performance-runbook-rules.yaml:2: rule HighLatency: translated to "
                          "`p95 by () (nginx_request_duration_seconds) > 2` with window 5m; "
                          "severity 'warning' -> SEV3; 'http_request_duration_seconds' read as "
                          "'nginx_request_duration_seconds' (name map)",
                          "performance-runbook-rules.yaml:10: rule LowThroughput: translated to "
                          "`sum(rate(nginx_requests_per_second[5m])) < 100`; severity 'warning' "
                          "-> SEV3; 'http_requests_total' read as 'nginx_requests_per_second' "
                          "(name map)"));
}

}  // namespace
}  // namespace vigil::controller
