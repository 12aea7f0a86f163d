// ParseAlertmanagerWebhook on a real Alertmanager v4 notification and on the edge cases of its
// mapping (severity names, instance -> agent, Go's zero time) and of every error it reports;
// CheckJsonDepth; AlertmanagerReceiver's credentials, caps and refusal counters.
#include "controller/http/alertmanager_webhook.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "controller/http/self_alerts.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"

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

TEST(AlertmanagerWebhookTest, TooManyAlertsIsResourceExhaustedBeforeConverting) {
  // Three alerts, the third malformed: the count is refused before any alert is looked at.
  std::string json =
      R"({"alerts":[{"status":"firing","labels":{"alertname":"A"},"startsAt":"2024-03-01T00:00:00Z"},)"
      R"({"status":"firing","labels":{"alertname":"B"},"startsAt":"2024-03-01T00:00:00Z"},42]})";
  absl::StatusOr<std::vector<v1::Alert>> alerts = ParseAlertmanagerWebhook(json, 2);
  ASSERT_FALSE(alerts.ok());
  EXPECT_EQ(alerts.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(alerts.status().message()), HasSubstr("3 alerts"));
  EXPECT_EQ(ErrorOf(json), "alert 3 is not an object");  // without the cap
}

TEST(CheckJsonDepthTest, CountsArraysAndObjectsOutsideStrings) {
  EXPECT_TRUE(CheckJsonDepth(R"({"a":[[{"b":1}]]})", 4).ok());
  absl::Status status = CheckJsonDepth(R"({"a":[[{"b":1}]]})", 3);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("deeper than 3 (depth 4 at byte 7)"));
  // Brackets in strings, escaped quotes included, do not count.
  EXPECT_TRUE(CheckJsonDepth(R"({"a":"[[[[\"[[[["})", 1).ok());
  // 100,000 nested arrays: refused at once, without recursion.
  std::string deep(100000, '[');
  status = CheckJsonDepth(deep, 32);
  EXPECT_THAT(std::string(status.message()), HasSubstr("deeper than 32 (depth 33"));
}

// A notification with `n` firing alerts.
std::string Notification(int n) {
  std::vector<std::string> alerts;
  for (int i = 0; i < n; ++i) {
    alerts.push_back(absl::StrCat(R"({"status":"firing","labels":{"alertname":"A","i":")", i,
                                  R"("},"startsAt":"2024-03-01T00:00:00Z"})"));
  }
  return absl::StrCat(R"({"status":"firing","alerts":[)", absl::StrJoin(alerts, ","), "]}");
}

class AlertmanagerReceiverTest : public ::testing::Test {
 protected:
  void Make(AlertmanagerReceiver::Limits limits) {
    receiver_ = std::make_unique<AlertmanagerReceiver>(
        limits,
        [this](const http::HttpRequest& request) -> absl::Status {
          const std::string& auth = request.Header("authorization");
          if (auth == "Bearer responder") {
            return absl::OkStatus();
          }
          if (auth == "Bearer viewer") {
            return absl::PermissionDeniedError("v is a viewer");
          }
          if (auth == "Bearer broken") {
            return absl::UnavailableError("store down");
          }
          return absl::UnauthenticatedError("no token");
        },
        [this](std::vector<v1::Alert> alerts) {
          if (!store_error_.ok()) {
            return store_error_;
          }
          received_ += alerts.size();
          return absl::OkStatus();
        },
        &clock_);
  }
  http::HttpResponse Post(const std::string& body, const std::string& token = "responder") {
    http::HttpRequest request;
    request.method = "POST";
    request.path = "/api/v1/alertmanager";
    if (!token.empty()) {
      request.headers["authorization"] = "Bearer " + token;
    }
    request.body = body;
    return receiver_->Handle(request);
  }
  static std::string HeaderOf(const http::HttpResponse& response, const std::string& name) {
    for (const auto& [key, value] : response.headers) {
      if (key == name) {
        return value;
      }
    }
    return "";
  }

  SimulatedClock clock_;
  std::unique_ptr<AlertmanagerReceiver> receiver_;
  size_t received_ = 0;
  absl::Status store_error_;  // what the sink answers; OK: stored
};

using Refusal = AlertmanagerReceiver::Refusal;

TEST_F(AlertmanagerReceiverTest, CredentialsComeFirst) {
  Make({});
  http::HttpResponse response = Post(Notification(1), "");
  EXPECT_EQ(response.status, 401);
  EXPECT_THAT(HeaderOf(response, "WWW-Authenticate"), StartsWith("Bearer"));
  EXPECT_EQ(Post("not even json", "").status, 401);  // not parsed for a stranger
  EXPECT_EQ(Post(Notification(1), "viewer").status, 403);
  EXPECT_EQ(Post(Notification(1), "broken").status, 503);
  EXPECT_EQ(received_, 0u);
  EXPECT_EQ(receiver_->refused(Refusal::kUnauthorized), 2u);
  EXPECT_EQ(receiver_->refused(Refusal::kForbidden), 1u);
  response = Post(Notification(2));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "accepted 2 alert(s)\n");
  EXPECT_EQ(received_, 2u);
  EXPECT_EQ(receiver_->alerts_accepted(), 2u);
}

TEST_F(AlertmanagerReceiverTest, AlertsVigilSentAreDroppedAndCounted) {
  Make({});
  // One of Vigil's own notifications routed back, beside a foreign alert.
  const std::string body = R"({"version":"4","status":"firing","alerts":[
    {"status":"firing","labels":{"alertname":"INC-1","incident_id":"INC-1","vigil_source":"vigil"},
     "startsAt":"2026-01-01T00:00:00Z"},
    {"status":"firing","labels":{"alertname":"HighLatency","instance":"web-1:9100"},
     "startsAt":"2026-01-01T00:00:00Z"}]})";
  http::HttpResponse response = Post(body);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(received_, 1u);
  EXPECT_EQ(receiver_->own_alerts_dropped(), 1u);
  // Only Vigil's own: nothing reaches the incidents, and Alertmanager is not asked to resend.
  const std::string own_only = R"({"version":"4","status":"firing","alerts":[
    {"status":"firing","labels":{"alertname":"INC-2","vigil_source":"vigil"},
     "startsAt":"2026-01-01T00:00:00Z"}]})";
  response = Post(own_only);
  EXPECT_EQ(response.status, 200);
  EXPECT_THAT(response.body, HasSubstr("sent by Vigil"));
  EXPECT_EQ(received_, 1u);
  EXPECT_EQ(receiver_->own_alerts_dropped(), 2u);
  // Another value of the label is somebody else's alert.
  const std::string other = R"({"version":"4","status":"firing","alerts":[
    {"status":"firing","labels":{"alertname":"X","vigil_source":"prometheus"},
     "startsAt":"2026-01-01T00:00:00Z"}]})";
  EXPECT_EQ(Post(other).status, 200);
  EXPECT_EQ(received_, 2u);
  std::string page;
  receiver_->AppendMetrics(&page);
  EXPECT_THAT(page,
              HasSubstr("vigil_webhook_self_alerts_dropped_total{reason=\"vigil_source\"} 2"));
}

// A notification with one firing alert per entry of `labels` (each the inside of an object).
std::string Alerts(const std::vector<std::string>& labels) {
  std::vector<std::string> alerts;
  for (const std::string& l : labels) {
    alerts.push_back(absl::StrCat(R"({"status":"firing","labels":{)", l,
                                  R"(},"startsAt":"2026-01-01T00:00:00Z"})"));
  }
  return absl::StrCat(R"({"version":"4","status":"firing","alerts":[)", absl::StrJoin(alerts, ","),
                      "]}");
}

// Log lines written while it lives (spdlog's default logger swapped for a capturing one).
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  // Lines containing `text`.
  int Count(const std::string& text) const {
    int n = 0;
    for (absl::string_view line : absl::StrSplit(out_.str(), '\n')) {
      n += absl::StrContains(line, text) ? 1 : 0;
    }
    return n;
  }
  std::string Text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST_F(AlertmanagerReceiverTest, AlertsAboutVigilAreDroppedByReasonAndAnswered200) {
  Make({});
  // A Prometheus alert on the controller's /metrics, one on the fleet page, a component
  // labelled as Vigil: none becomes an incident, and Alertmanager is not asked to retry.
  http::HttpResponse response =
      Post(Alerts({R"("alertname":"VigilDown","job":"vigil","instance":"ctl-1:9464")",
                   R"("alertname":"FleetLatency","job":"vigil-fleet","agent":"web-1")",
                   R"("alertname":"CtlMemory","service":"vigil")",
                   R"("alertname":"PodRestarts","app":"vigil_controller")"}));
  EXPECT_EQ(response.status, 200);
  EXPECT_THAT(response.body, HasSubstr("dropped 4 alert(s)"));
  EXPECT_EQ(received_, 0u);
  EXPECT_EQ(receiver_->self_alerts_dropped("vigil_job"), 2u);
  EXPECT_EQ(receiver_->self_alerts_dropped("vigil_service"), 1u);
  EXPECT_EQ(receiver_->self_alerts_dropped("vigil_app"), 1u);
  EXPECT_EQ(receiver_->self_alerts_dropped("vigil_source"), 0u);
  // Beside them, alerts about anything else go on; the patterns are anchored.
  response = Post(Alerts({R"("alertname":"VigilDown","job":"vigil")",
                          R"("alertname":"HighLatency","job":"vigilant-api")",
                          R"("alertname":"DiskFull","service":"rag-api","job":"node")"}));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "accepted 2 alert(s)\n");
  EXPECT_EQ(received_, 2u);
  EXPECT_EQ(receiver_->self_alerts_dropped("vigil_job"), 3u);
  std::string page;
  receiver_->AppendMetrics(&page);
  EXPECT_THAT(page, HasSubstr("vigil_webhook_self_alerts_dropped_total{reason=\"vigil_job\"} 3\n"));
  EXPECT_THAT(page,
              HasSubstr("vigil_webhook_self_alerts_dropped_total{reason=\"vigil_service\"} 1\n"));
  EXPECT_THAT(page, HasSubstr("vigil_webhook_self_alerts_dropped_total{reason=\"vigil_app\"} 1\n"));
  EXPECT_THAT(page,
              HasSubstr("vigil_webhook_self_alerts_dropped_total{reason=\"vigil_source\"} 0\n"));
}

TEST_F(AlertmanagerReceiverTest, ConfiguredSelfAlertsReplaceTheDefaultsAndNeedEveryMatcher) {
  absl::StatusOr<AlertLabelMatcher> job = ParseAlertLabelMatcher(R"(job="ops")");
  absl::StatusOr<AlertLabelMatcher> team = ParseAlertLabelMatcher(R"(team=~"sre|ops")");
  ASSERT_TRUE(job.ok() && team.ok());
  receiver_ = std::make_unique<AlertmanagerReceiver>(
      AlertmanagerReceiver::Limits{}, [](const http::HttpRequest&) { return absl::OkStatus(); },
      [this](std::vector<v1::Alert> alerts) {
        received_ += alerts.size();
        return absl::OkStatus();
      },
      &clock_, std::vector<SelfAlertRule>{{"ops_stack", {*job, *team}}});
  EXPECT_EQ(Post(Alerts({R"("alertname":"A","job":"ops","team":"sre")"})).status, 200);
  EXPECT_EQ(receiver_->self_alerts_dropped("ops_stack"), 1u);
  EXPECT_EQ(received_, 0u);
  // One matcher of two is not enough; the defaults are gone; Vigil's own alerts still drop.
  EXPECT_EQ(Post(Alerts({R"("alertname":"B","job":"ops","team":"apps")",
                         R"("alertname":"C","job":"vigil")",
                         R"("alertname":"D","vigil_source":"vigil")"}))
                .status,
            200);
  EXPECT_EQ(received_, 2u);
  EXPECT_EQ(receiver_->self_alerts_dropped("ops_stack"), 1u);
  EXPECT_EQ(receiver_->own_alerts_dropped(), 1u);
  EXPECT_EQ(receiver_->self_alerts_dropped("vigil_job"), 0u);
}

TEST_F(AlertmanagerReceiverTest, SelfAlertsAreLoggedOncePerAlertnameAndInterval) {
  AlertmanagerReceiver::Limits limits;
  limits.self_alert_log_interval = absl::Minutes(10);
  Make(limits);
  LogCapture logs;
  const std::string down = Alerts({R"("alertname":"VigilDown","job":"vigil")"});
  const std::string slow = Alerts({R"("alertname":"VigilSlow","job":"vigil")"});
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(Post(down).status, 200);
    ASSERT_EQ(Post(slow).status, 200);
    clock_.Advance(absl::Minutes(1));
  }
  // Each alertname once, saying why (the entry and its matcher) and that it is no incident.
  EXPECT_EQ(logs.Count("alert VigilDown "), 1) << logs.Text();
  EXPECT_EQ(logs.Count("alert VigilSlow "), 1) << logs.Text();
  EXPECT_THAT(logs.Text(), HasSubstr("webhook_self_alerts 'vigil_job': job=~"));
  EXPECT_THAT(logs.Text(), HasSubstr("not made an incident"));
  // After the interval the next line counts the ones in between.
  clock_.Advance(absl::Minutes(5));
  ASSERT_EQ(Post(down).status, 200);
  EXPECT_EQ(logs.Count("alert VigilDown "), 2) << logs.Text();
  EXPECT_THAT(logs.Text(), HasSubstr("4 more of it dropped since the last line"));
  EXPECT_EQ(receiver_->self_alerts_dropped("vigil_job"), 11u);
}

TEST_F(AlertmanagerReceiverTest, SelfAlertLogMemoryIsBoundedWhateverTheAlertnames) {
  Make({});
  LogCapture logs;
  // Far more distinct alertnames than the log remembers: every alert is still dropped, and
  // past the bound the lines are paced by the webhook's shared limit.
  for (int i = 0; i < 1500; ++i) {
    ASSERT_EQ(Post(Alerts({absl::StrCat(R"("alertname":"A)", i, R"(","job":"vigil")")})).status,
              200);
  }
  EXPECT_EQ(receiver_->self_alerts_dropped("vigil_job"), 1500u);
  EXPECT_EQ(received_, 0u);
  EXPECT_LE(logs.Count("not made an incident"), 1000 + 5) << "at most the bound plus a burst";
  EXPECT_GE(logs.Count("not made an incident"), 1000);
}

TEST(SelfAlertsTest, MatchersParseLikeAlertmanagers) {
  absl::StatusOr<AlertLabelMatcher> m = ParseAlertLabelMatcher(R"( job =~ "vigil|vigil-.*" )");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->label, "job");
  EXPECT_EQ(m->op, AlertLabelMatcher::Op::kRegex);
  EXPECT_EQ(m->value, "vigil|vigil-.*");
  m = ParseAlertLabelMatcher("service=vigil");  // unquoted, as Alertmanager allows
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->op, AlertLabelMatcher::Op::kEqual);
  EXPECT_EQ(m->value, "vigil");
  m = ParseAlertLabelMatcher(R"(team!="a\"b")");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->op, AlertLabelMatcher::Op::kNotEqual);
  EXPECT_EQ(m->value, "a\"b");
  m = ParseAlertLabelMatcher(R"(env!~"dev|test")");
  ASSERT_TRUE(m.ok());
  google::protobuf::Map<std::string, std::string> labels;
  EXPECT_TRUE(m->Matches(labels)) << "a missing label reads \"\"";
  labels["env"] = "dev";
  EXPECT_FALSE(m->Matches(labels));
  labels["env"] = "devx";
  EXPECT_TRUE(m->Matches(labels)) << "anchored";

  EXPECT_THAT(std::string(ParseAlertLabelMatcher("job").status().message()),
              HasSubstr("no =, !=, =~ or !~"));
  EXPECT_THAT(std::string(ParseAlertLabelMatcher(R"(1job="x")").status().message()),
              HasSubstr("not a label name"));
  EXPECT_THAT(std::string(ParseAlertLabelMatcher(R"(job="x)").status().message()),
              HasSubstr("quote is not closed"));
  EXPECT_THAT(std::string(ParseAlertLabelMatcher(R"(job="x"y)").status().message()),
              HasSubstr("after the closing quote"));
  EXPECT_THAT(std::string(ParseAlertLabelMatcher(R"(job=~"[")").status().message()),
              HasSubstr("regular expression is invalid"));
  EXPECT_FALSE(ParseAlertLabelMatcher(std::string(2000, 'a') + "=b").ok());
}

TEST(SelfAlertsTest, TheDefaultsParseAndNameTheirReasons) {
  const std::vector<SelfAlertRule> rules = DefaultSelfAlertRules();
  ASSERT_EQ(rules.size(), 3u);
  for (const SelfAlertRule& rule : rules) {
    ASSERT_EQ(rule.matchers.size(), 1u) << rule.name;
    EXPECT_NE(rule.matchers[0].regex, nullptr) << rule.name;
  }
  google::protobuf::Map<std::string, std::string> labels;
  labels["job"] = "node";
  EXPECT_FALSE(SelfAlertReason(rules, labels).has_value());
  labels["app"] = "vigil";
  EXPECT_EQ(SelfAlertReason(rules, labels), 3u);
  labels["vigil_source"] = "vigil";
  EXPECT_EQ(SelfAlertReason(rules, labels), 0u) << "Vigil's own notification comes first";
}

TEST_F(AlertmanagerReceiverTest, AlertsTheStoreRefusesAreAnswered503SoAlertmanagerResends) {
  Make({});
  store_error_ = absl::ResourceExhaustedError("vigil.db: database or disk is full");
  http::HttpResponse response = Post(Notification(2));
  EXPECT_EQ(response.status, 503);
  EXPECT_THAT(response.body, HasSubstr("database or disk is full"));
  EXPECT_THAT(response.body, HasSubstr("send them again"));
  EXPECT_EQ(receiver_->alerts_accepted(), 0u);
  std::string page;
  receiver_->AppendMetrics(&page);
  EXPECT_THAT(page, HasSubstr("vigil_webhook_store_failures_total 1"));
  store_error_ = absl::OkStatus();
  EXPECT_EQ(Post(Notification(2)).status, 200);
  EXPECT_EQ(receiver_->alerts_accepted(), 2u);
}

TEST_F(AlertmanagerReceiverTest, BodySizeDepthAndShape) {
  AlertmanagerReceiver::Limits limits;
  limits.max_body_bytes = 1000;
  Make(limits);
  http::HttpResponse response = Post(std::string(1001, ' '));
  EXPECT_EQ(response.status, 413);
  EXPECT_THAT(response.body, HasSubstr("1001 bytes"));
  response = Post(absl::StrCat(R"({"alerts":)", std::string(40, '['), std::string(40, ']'), "}"));
  EXPECT_EQ(response.status, 400);
  EXPECT_THAT(response.body, HasSubstr("deeper than 32"));
  EXPECT_EQ(Post("{nope").status, 400);
  EXPECT_EQ(receiver_->refused(Refusal::kTooLarge), 1u);
  EXPECT_EQ(receiver_->refused(Refusal::kBadRequest), 2u);
  EXPECT_EQ(received_, 0u);
}

TEST_F(AlertmanagerReceiverTest, AlertsPerRequestCapIs413) {
  AlertmanagerReceiver::Limits limits;
  limits.max_alerts_per_request = 5;
  Make(limits);
  EXPECT_EQ(Post(Notification(5)).status, 200);
  http::HttpResponse response = Post(Notification(6));
  EXPECT_EQ(response.status, 413);
  EXPECT_THAT(response.body, HasSubstr("6 alerts"));
  EXPECT_EQ(received_, 5u);
  EXPECT_EQ(receiver_->refused(Refusal::kTooLarge), 1u);
}

TEST_F(AlertmanagerReceiverTest, AlertsPerMinuteCapIs503WithRetryAfterAndRefills) {
  AlertmanagerReceiver::Limits limits;
  limits.max_alerts_per_minute = 60;  // one a second
  Make(limits);
  EXPECT_EQ(Post(Notification(50)).status, 200);
  http::HttpResponse response = Post(Notification(20));
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(HeaderOf(response, "Retry-After"), "10");  // 10 alerts short, one a second
  EXPECT_EQ(received_, 50u);
  EXPECT_EQ(receiver_->refused(Refusal::kRateLimited), 1u);
  EXPECT_EQ(Post(Notification(10)).status, 200);  // what is left still fits
  clock_.Advance(absl::Seconds(19));
  EXPECT_EQ(Post(Notification(20)).status, 503);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(Post(Notification(20)).status, 200);
  EXPECT_EQ(received_, 80u);
  // The bucket holds at most a minute's worth however long it rests.
  clock_.Advance(absl::Hours(1));
  EXPECT_EQ(Post(Notification(60)).status, 200);
  EXPECT_EQ(Post(Notification(1)).status, 503);
}

TEST_F(AlertmanagerReceiverTest, MetricsNameEveryReason) {
  Make({});
  Post(Notification(1), "");
  Post(Notification(3));
  std::string page;
  receiver_->AppendMetrics(&page);
  EXPECT_THAT(page, HasSubstr("vigil_webhook_requests_refused_total{reason=\"unauthorized\"} 1\n"));
  EXPECT_THAT(page, HasSubstr("vigil_webhook_requests_refused_total{reason=\"too_large\"} 0\n"));
  EXPECT_THAT(page, HasSubstr("vigil_webhook_requests_refused_total{reason=\"rate_limited\"} 0\n"));
  EXPECT_THAT(page, HasSubstr("vigil_webhook_requests_refused_total{reason=\"bad_request\"} 0\n"));
  EXPECT_THAT(page, HasSubstr("vigil_webhook_alerts_accepted_total 3\n"));
}

}  // namespace
}  // namespace vigil::controller
