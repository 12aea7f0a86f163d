// ParseAlertmanagerWebhook on a real Alertmanager v4 notification and on the edge cases of its
// mapping (severity names, instance -> agent, Go's zero time) and of every error it reports.
#include "controller/http/alertmanager_webhook.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace vigil::controller {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

// As Alertmanager 0.25 posts it: one firing and one resolved alert in a group.
constexpr char kNotification[] = R"json({
  "receiver": "vigil",
  "status": "firing",
  "alerts": [
    {
      "status": "firing",
      "labels": {
        "alertname": "HighLatency",
        "instance": "api-1.example.net:9100",
        "job": "node",
        "severity": "critical"
      },
      "annotations": {
        "summary": "p99 latency above 500 ms",
        "description": "p99 is 740 ms",
        "runbook_url": "https://runbooks.example.net/latency"
      },
      "startsAt": "2024-03-01T10:00:00.123456789Z",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "http://prometheus:9090/graph?g0.expr=latency_p99+%3E+0.5&g0.tab=1",
      "fingerprint": "c4b5d0e0f1a2b3c4"
    },
    {
      "status": "resolved",
      "labels": {
        "alertname": "DiskFull",
        "instance": "db-1:9100",
        "job": "node",
        "severity": "warning",
        "vigil_agent": "db-1-agent"
      },
      "annotations": {
        "description": "/var is 95% full",
        "runbook": "https://runbooks.example.net/disk"
      },
      "startsAt": "2024-03-01T09:00:00Z",
      "endsAt": "2024-03-01T10:30:00.5+01:00",
      "generatorURL": "http://prometheus:9090/graph?g0.expr=disk_used_ratio+%3E+0.9&g0.tab=1",
      "fingerprint": "0a1b2c3d4e5f6071"
    }
  ],
  "groupLabels": {"job": "node"},
  "commonLabels": {"job": "node"},
  "commonAnnotations": {},
  "externalURL": "http://alertmanager:9093",
  "version": "4",
  "groupKey": "{}:{job=\"node\"}",
  "truncatedAlerts": 0
})json";

// A notification with one firing alert whose labels are `labels_json` (the inside of an object).
std::string OneAlert(const std::string& labels_json, const std::string& extra_fields = "") {
  return absl::StrCat(
      R"({"version":"4","status":"firing","receiver":"r","groupLabels":{},"commonLabels":{},)",
      R"("alerts":[{"status":"firing","labels":{)", labels_json, R"(},"annotations":{},)",
      R"("startsAt":"2024-03-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z")", extra_fields, "}]}");
}

v1::Alert ParseOne(const std::string& json) {
  absl::StatusOr<std::vector<v1::Alert>> alerts = ParseAlertmanagerWebhook(json);
  EXPECT_TRUE(alerts.ok()) << alerts.status();
  if (!alerts.ok() || alerts->size() != 1) {
    ADD_FAILURE() << "expected exactly one alert";
    return v1::Alert();
  }
  return (*alerts)[0];
}

std::string ErrorOf(const std::string& json) {
  absl::StatusOr<std::vector<v1::Alert>> alerts = ParseAlertmanagerWebhook(json);
  EXPECT_FALSE(alerts.ok());
  if (alerts.ok()) {
    return "";
  }
  EXPECT_EQ(alerts.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(alerts.status().message());
}

TEST(AlertmanagerWebhookTest, RealNotificationWithFiringAndResolvedAlerts) {
  absl::StatusOr<std::vector<v1::Alert>> alerts = ParseAlertmanagerWebhook(kNotification);
  ASSERT_TRUE(alerts.ok()) << alerts.status();
  ASSERT_EQ(alerts->size(), 2u);

  const v1::Alert& firing = (*alerts)[0];
  EXPECT_EQ(firing.id(), "am-c4b5d0e0f1a2b3c4");
  EXPECT_EQ(firing.rule(), "HighLatency");
  EXPECT_EQ(firing.severity(), v1::SEV1);
  EXPECT_EQ(firing.state(), v1::FIRING);
  EXPECT_EQ(firing.agent_id(), "api-1.example.net");
  EXPECT_EQ(firing.summary(), "p99 latency above 500 ms");
  EXPECT_EQ(firing.runbook(), "https://runbooks.example.net/latency");
  // 2024-03-01T10:00:00Z is 1709287200 s; nanoseconds are cut to milliseconds.
  EXPECT_EQ(firing.active_since_unix_ms(), 1709287200123);
  EXPECT_EQ(firing.fired_unix_ms(), 1709287200123);
  EXPECT_EQ(firing.resolved_unix_ms(), 0);
  EXPECT_EQ(firing.source(), "alertmanager");
  EXPECT_EQ(firing.labels_size(), 4);
  EXPECT_EQ(firing.labels().at("job"), "node");
  EXPECT_EQ(firing.labels().at("instance"), "api-1.example.net:9100");

  const v1::Alert& resolved = (*alerts)[1];
  EXPECT_EQ(resolved.id(), "am-0a1b2c3d4e5f6071");
  EXPECT_EQ(resolved.rule(), "DiskFull");
  EXPECT_EQ(resolved.severity(), v1::SEV3);
  EXPECT_EQ(resolved.state(), v1::RESOLVED);
  EXPECT_EQ(resolved.agent_id(), "db-1-agent");  // vigil_agent wins over instance
  EXPECT_EQ(resolved.summary(), "/var is 95% full");
  EXPECT_EQ(resolved.runbook(), "https://runbooks.example.net/disk");
  EXPECT_EQ(resolved.active_since_unix_ms(), 1709283600000);
  // 10:30:00.5+01:00 is 09:30:00.5Z.
  EXPECT_EQ(resolved.resolved_unix_ms(), 1709285400500);
  EXPECT_EQ(resolved.labels().at("vigil_agent"), "db-1-agent");
}

TEST(AlertmanagerWebhookTest, EmptyAlertListIsNoAlerts) {
  absl::StatusOr<std::vector<v1::Alert>> alerts =
      ParseAlertmanagerWebhook(R"({"version":"4","status":"resolved","alerts":[]})");
  ASSERT_TRUE(alerts.ok()) << alerts.status();
  EXPECT_TRUE(alerts->empty());
}

TEST(AlertmanagerWebhookTest, SeverityNames) {
  const std::vector<std::pair<std::string, v1::Severity>> cases = {
      {"critical", v1::SEV1}, {"sev1", v1::SEV1},    {"SEV1", v1::SEV1},  {"page", v1::SEV1},
      {"Critical", v1::SEV1}, {"error", v1::SEV2},   {"major", v1::SEV2}, {"sev2", v1::SEV2},
      {"high", v1::SEV2},     {"warning", v1::SEV3}, {"sev3", v1::SEV3},  {"medium", v1::SEV3},
      {"info", v1::SEV4},     {"sev4", v1::SEV4},    {"low", v1::SEV4},   {"none", v1::SEV4},
      {"bogus", v1::SEV3},    {"", v1::SEV3},
  };
  for (const auto& [name, want] : cases) {
    v1::Alert alert =
        ParseOne(OneAlert(absl::StrCat(R"("alertname":"A","severity":")", name, "\"")));
    EXPECT_EQ(alert.severity(), want) << "severity \"" << name << "\"";
  }
  EXPECT_EQ(ParseOne(OneAlert(R"("alertname":"A")")).severity(), v1::SEV3);
}

TEST(AlertmanagerWebhookTest, AgentIdFromInstance) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"db-1:9100", "db-1"}, {"10.0.0.5:9187", "10.0.0.5"},        {"cache-2", "cache-2"},
      {"[::1]:9100", "::1"}, {"http://web-1:8080/probe", "web-1"},
  };
  for (const auto& [instance, want] : cases) {
    v1::Alert alert =
        ParseOne(OneAlert(absl::StrCat(R"("alertname":"A","instance":")", instance, "\"")));
    EXPECT_EQ(alert.agent_id(), want) << instance;
  }
  EXPECT_EQ(ParseOne(OneAlert(R"("alertname":"A")")).agent_id(), "");
  EXPECT_EQ(
      ParseOne(OneAlert(R"("alertname":"A","instance":"db-1:9100","vigil_agent":"a7")")).agent_id(),
      "a7");
}

TEST(AlertmanagerWebhookTest, ZeroEndsAtIsZeroAndFiringIgnoresEndsAt) {
  // A resolved alert with Go's zero endsAt: unset, so 0 and not year 1.
  std::string resolved_zero =
      absl::StrReplaceAll(OneAlert(R"("alertname":"A")"),
                          {{R"("status":"firing","labels")", R"("status":"resolved","labels")"}});
  v1::Alert alert = ParseOne(resolved_zero);
  EXPECT_EQ(alert.state(), v1::RESOLVED);
  EXPECT_EQ(alert.resolved_unix_ms(), 0);
  EXPECT_EQ(alert.active_since_unix_ms(), 1709251200000);

  // A firing alert's endsAt is Alertmanager's timeout guess, not a resolution.
  std::string firing_future = absl::StrReplaceAll(
      OneAlert(R"("alertname":"A")"),
      {{R"("endsAt":"0001-01-01T00:00:00Z")", R"("endsAt":"2024-03-01T00:05:00Z")"}});
  alert = ParseOne(firing_future);
  EXPECT_EQ(alert.state(), v1::FIRING);
  EXPECT_EQ(alert.resolved_unix_ms(), 0);
}

TEST(AlertmanagerWebhookTest, StateFallsBackToTheNotificationStatus) {
  v1::Alert alert = ParseOne(absl::StrCat(
      R"({"status":"resolved","alerts":[{"labels":{"alertname":"A"},)",
      R"("startsAt":"2024-03-01T00:00:00Z",)", R"("endsAt":"2024-03-01T00:01:00Z"}]})"));
  EXPECT_EQ(alert.state(), v1::RESOLVED);
  EXPECT_EQ(alert.resolved_unix_ms(), 1709251260000);
}

TEST(AlertmanagerWebhookTest, WithoutFingerprintIdHashesSortedLabels) {
  v1::Alert a = ParseOne(OneAlert(R"("alertname":"A","instance":"db-1:9100","job":"node")"));
  v1::Alert same = ParseOne(OneAlert(R"("job":"node","instance":"db-1:9100","alertname":"A")"));
  v1::Alert other = ParseOne(OneAlert(R"("alertname":"A","instance":"db-2:9100","job":"node")"));
  EXPECT_THAT(a.id(), MatchesRegex("am-[0-9a-f]{64}"));
  EXPECT_EQ(a.id(), same.id());
  EXPECT_NE(a.id(), other.id());
  // An empty fingerprint counts as none.
  EXPECT_EQ(ParseOne(OneAlert(R"("alertname":"A","instance":"db-1:9100","job":"node")",
                              R"(,"fingerprint":"")"))
                .id(),
            a.id());
}

TEST(AlertmanagerWebhookTest, SummaryAndRunbookFallbacks) {
  std::string json = absl::StrReplaceAll(
      OneAlert(R"("alertname":"A")"),
      {{R"("annotations":{})",
        R"("annotations":{"description":"d","runbook":"rb","runbook_url":"https://r"})"}});
  v1::Alert alert = ParseOne(json);
  EXPECT_EQ(alert.summary(), "d");
  EXPECT_EQ(alert.runbook(), "https://r");
  EXPECT_EQ(ParseOne(OneAlert(R"("alertname":"A")")).summary(), "");
}

TEST(AlertmanagerWebhookTest, NotJson) {
  std::string error = ErrorOf("{not json");
  EXPECT_THAT(error, StartsWith("webhook body is not JSON: "));
  EXPECT_GT(error.size(), strlen("webhook body is not JSON: "));  // protobuf's detail follows
  EXPECT_EQ(error.find('\n'), std::string::npos);                 // on one line
  EXPECT_THAT(ErrorOf(""), StartsWith("webhook body is not JSON: "));
  EXPECT_EQ(ErrorOf("[1, 2]"), "webhook body is not JSON: the top level is not an object");
}

TEST(AlertmanagerWebhookTest, NoAlertsList) {
  EXPECT_EQ(ErrorOf(R"({"version":"4","status":"firing"})"), "webhook body has no \"alerts\" list");
  EXPECT_EQ(ErrorOf(R"({"alerts":{"a":1}})"), "webhook body has no \"alerts\" list");
}

TEST(AlertmanagerWebhookTest, NoAlertnameNamesTheAlert) {
  EXPECT_EQ(ErrorOf(OneAlert(R"("severity":"critical")")), "alert 1: no alertname label");
  std::string two =
      absl::StrCat(R"({"alerts":[{"status":"firing","labels":{"alertname":"A"},)",
                   R"("startsAt":"2024-03-01T00:00:00Z"},)",
                   R"({"status":"firing","labels":{},"startsAt":"2024-03-01T00:00:00Z"}]})");
  EXPECT_EQ(ErrorOf(two), "alert 2: no alertname label");
}

TEST(AlertmanagerWebhookTest, BadTimeNamesAlertRuleFieldAndValue) {
  std::string json = absl::StrCat(
      R"({"alerts":[{"status":"firing","labels":{"alertname":"A"},)",
      R"("startsAt":"2024-03-01T00:00:00Z"},)",
      R"({"status":"firing","labels":{"alertname":"HighLatency"},"startsAt":"xyz"}]})");
  EXPECT_EQ(ErrorOf(json), "alert 2 (HighLatency): startsAt \"xyz\" is not an RFC 3339 time");
  EXPECT_EQ(ErrorOf(absl::StrReplaceAll(OneAlert(R"("alertname":"A")"),
                                        {{"0001-01-01T00:00:00Z", "2024-03-01 10:00"}})),
            "alert 1 (A): endsAt \"2024-03-01 10:00\" is not an RFC 3339 time");
  EXPECT_EQ(ErrorOf(R"({"alerts":[{"status":"firing","labels":{"alertname":"A"}}]})"),
            "alert 1 (A): no startsAt");
}

TEST(AlertmanagerWebhookTest, OtherShapeErrorsSayWhatAndWhere) {
  EXPECT_EQ(ErrorOf(R"({"alerts":[42]})"), "alert 1 is not an object");
  EXPECT_EQ(ErrorOf(R"({"alerts":[{"labels":"alertname=A"}]})"),
            "alert 1: \"labels\" is not an object");
  EXPECT_EQ(ErrorOf(R"({"alerts":[{"labels":{"alertname":"A","n":3}}]})"),
            "alert 1: labels.n is not a string");
  EXPECT_THAT(ErrorOf(absl::StrReplaceAll(
                  OneAlert(R"("alertname":"A")"),
                  {{R"("status":"firing","labels")", R"("status":"pending","labels")"}})),
              HasSubstr("alert 1 (A): status \"pending\""));
}

}  // namespace
}  // namespace vigil::controller
