// Which rules become thresholds the agents watch between collection rounds, and which do not.
#include "controller/rules/thresholds.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace vigil::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

std::vector<Rule> Parse(const std::string& yaml) {
  RuleFile file = ParseRules(yaml, "t.yaml");
  EXPECT_THAT(file.errors, IsEmpty());
  return file.rules;
}

TEST(WatchThresholds, PerAgentGaugeRuleBecomesAThreshold) {
  const WatchDerivation d = DeriveWatchThresholds(Parse(R"(rules:
  - alert: TooManyRedisClients
    expr: redis_connected_clients{role="cache", env!="dev", mount=~"/d.*", x!~"a|b"} >= 20
    for: 30s
)"));
  EXPECT_THAT(d.watched, ElementsAre("TooManyRedisClients"));
  EXPECT_THAT(d.unwatched, IsEmpty());
  ASSERT_EQ(d.message.thresholds_size(), 1);
  const v1::WatchThreshold& t = d.message.thresholds(0);
  EXPECT_EQ(t.metric(), "redis_connected_clients");
  EXPECT_EQ(t.comparison(), v1::WatchThreshold::GREATER_EQUAL);
  EXPECT_EQ(t.threshold(), 20);
  EXPECT_EQ(t.rule(), "TooManyRedisClients");
  ASSERT_EQ(t.matchers_size(), 4);
  EXPECT_EQ(t.matchers(0).label(), "role");
  EXPECT_EQ(t.matchers(0).op(), v1::WatchMatcher::EQUAL);
  EXPECT_EQ(t.matchers(0).value(), "cache");
  EXPECT_EQ(t.matchers(1).op(), v1::WatchMatcher::NOT_EQUAL);
  EXPECT_EQ(t.matchers(2).op(), v1::WatchMatcher::REGEX);
  EXPECT_EQ(t.matchers(2).value(), "/d.*");
  EXPECT_EQ(t.matchers(3).op(), v1::WatchMatcher::NOT_REGEX);
}

TEST(WatchThresholds, EveryComparisonCrossesTheWire) {
  const std::vector<std::pair<std::string, v1::WatchThreshold::Comparison>> cases = {
      {">", v1::WatchThreshold::GREATER}, {">=", v1::WatchThreshold::GREATER_EQUAL},
      {"<", v1::WatchThreshold::LESS},    {"<=", v1::WatchThreshold::LESS_EQUAL},
      {"==", v1::WatchThreshold::EQUAL},  {"!=", v1::WatchThreshold::NOT_EQUAL}};
  for (const auto& [text, wire] : cases) {
    const WatchDerivation d = DeriveWatchThresholds(
        Parse(absl::StrCat("rules:\n  - alert: R\n    expr: host_load1 ", text, " 4\n")));
    ASSERT_EQ(d.message.thresholds_size(), 1) << text;
    EXPECT_EQ(d.message.thresholds(0).comparison(), wire) << text;
  }
}

TEST(WatchThresholds, RulesJudgedOnlyOnTheControllerAreLeftOutWithTheReason) {
  const WatchDerivation d = DeriveWatchThresholds(Parse(R"(rules:
  - alert: FleetThroughput
    expr: sum(nginx_requests_per_second) < 100
  - alert: MaxMemoryByService
    expr: max by (service) (host_memory_used_ratio) > 0.9
  - alert: Latency
    expr: p95(nginx_request_duration_seconds) > 2
  - alert: Memory
    expr: host_memory_used_ratio > 0.85
  - alert: Busy
    expr: rate(nginx_requests_per_second[5m]) > 1000
  - alert: Spike
    expr: irate(nginx_requests_per_second[30s]) > 1000
)"));
  EXPECT_THAT(d.watched, ElementsAre("Memory"));
  ASSERT_THAT(d.unwatched, SizeIs(5));
  EXPECT_THAT(d.unwatched[0], HasSubstr("FleetThroughput: fleet-wide"));
  EXPECT_THAT(d.unwatched[1], HasSubstr("MaxMemoryByService: fleet-wide"));
  EXPECT_THAT(d.unwatched[2], HasSubstr("Latency: a histogram quantile"));
  // An agent compares single samples; an average over a range is the controller's.
  EXPECT_THAT(d.unwatched[3], HasSubstr("Busy: rate() over 5m (judged on the controller)"));
  EXPECT_THAT(d.unwatched[4], HasSubstr("Spike: irate() over 30s"));
  ASSERT_EQ(d.message.thresholds_size(), 1);
  EXPECT_EQ(d.message.thresholds(0).metric(), "host_memory_used_ratio");
}

TEST(WatchThresholds, TiersAreWatchedToo) {
  const WatchDerivation d = DeriveWatchThresholds(Parse(R"(rules:
  - alert: Disk
    expr: host_disk_used_ratio{mount="/"} > 0.80
    severity: SEV3
    tiers: [{threshold: 0.95, severity: SEV1}]
)"));
  ASSERT_EQ(d.message.thresholds_size(), 2);
  EXPECT_EQ(d.message.thresholds(0).threshold(), 0.80);
  EXPECT_EQ(d.message.thresholds(1).threshold(), 0.95);
  EXPECT_EQ(d.message.thresholds(1).matchers(0).value(), "/");
}

TEST(WatchThresholds, IdenticalThresholdsGoOnce) {
  const WatchDerivation d = DeriveWatchThresholds(Parse(R"(rules:
  - alert: A
    expr: host_load1 > 4
  - alert: B
    expr: host_load1 > 4
    for: 1m
  - alert: C
    expr: host_load1{role="db"} > 4
)"));
  EXPECT_THAT(d.watched, ElementsAre("A", "B", "C"));
  ASSERT_EQ(d.message.thresholds_size(), 2);
  EXPECT_EQ(d.message.thresholds(0).rule(), "A");
  EXPECT_EQ(d.message.thresholds(1).rule(), "C");
}

TEST(WatchThresholds, NonFiniteThresholdIsNotWatched) {
  std::vector<Rule> rules = Parse("rules:\n  - alert: R\n    expr: host_load1 > 4\n");
  ASSERT_THAT(rules, SizeIs(1));
  rules[0].expr.threshold = std::numeric_limits<double>::quiet_NaN();
  const WatchDerivation d = DeriveWatchThresholds(rules);
  EXPECT_EQ(d.message.thresholds_size(), 0);
  EXPECT_THAT(d.unwatched, ElementsAre(HasSubstr("not a finite number")));
}

TEST(WatchThresholds, BoundedPerAgentAndARuleIsWatchedWholeOrNotAtAll) {
  std::string yaml = "rules:\n";
  for (size_t i = 0; i < kMaxWatchThresholds - 1; ++i) {
    absl::StrAppend(&yaml, "  - alert: R", i, "\n    expr: host_load1 > ", i, "\n");
  }
  // Two thresholds with one place left: left out whole.
  absl::StrAppend(&yaml,
                  "  - alert: Disk\n    expr: host_disk_used_ratio > 0.8\n"
                  "    tiers: [{threshold: 0.95, severity: SEV1}]\n",
                  "  - alert: Last\n    expr: host_memory_used_ratio > 0.9\n");
  const WatchDerivation d = DeriveWatchThresholds(Parse(yaml));
  EXPECT_EQ(d.message.thresholds_size(), static_cast<int>(kMaxWatchThresholds));
  EXPECT_THAT(d.unwatched, ElementsAre(HasSubstr("Disk: over the limit")));
  EXPECT_EQ(d.watched.back(), "Last");
}

TEST(WatchThresholds, DefaultRules) {
  const WatchDerivation d = DeriveWatchThresholds(DefaultRules());
  EXPECT_THAT(d.watched, ::testing::Contains("HighMemoryUsage"));
  EXPECT_THAT(d.watched, ::testing::Not(::testing::Contains("HighAPILatency")));
  EXPECT_THAT(d.watched, ::testing::Not(::testing::Contains("LowThroughput")));
  EXPECT_EQ(d.watched.size() + d.unwatched.size(), DefaultRules().size());
}

}  // namespace
}  // namespace vigil::controller
