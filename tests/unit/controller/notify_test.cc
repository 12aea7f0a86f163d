// The pure parts of notifications: receivers from the settings file, the router, the payloads
// of each receiver (exact JSON fields), the HMAC signature and the backoff.
#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <fstream>

#include "controller/notify/backoff.h"
#include "controller/notify/notifier.h"
#include "controller/notify/notify_config.h"
#include "controller/notify/payloads.h"
#include "controller/notify/router.h"
#include "tests/support/process.h"
#include "tests/unit/controller/receiver_for_test.h"

namespace vigil::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

google::protobuf::Struct ParseObject(const std::string& json) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &s).ok()) << json;
  return s;
}
std::vector<std::string> Keys(const google::protobuf::Struct& s) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : s.fields()) {
    keys.push_back(k);
  }
  return keys;
}
std::string Str(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? "<absent>" : it->second.string_value();
}
const google::protobuf::Struct& Obj(const google::protobuf::Struct& s, const std::string& key) {
  return s.fields().at(key).struct_value();
}

v1::Notification Sample(const std::string& kind) {
  v1::Notification n;
  n.set_id(42);
  n.set_receiver("r");
  n.set_incident_id("INC-7");
  n.set_kind(kind);
  n.set_severity(v1::SEV2);
  n.set_title("API p95 latency above 2 s");
  n.add_services("rag-api");
  n.add_agents("web-1");
  n.set_summary("SEV2 incident opened: HighAPILatency on web-1");
  n.set_actor("controller");
  n.set_time_unix_ms(1'767'225'600'000);  // 2026-01-01T00:00:00Z
  n.set_opened_unix_ms(1'767'225'600'000);
  if (kind == "resolved") {
    n.set_resolved_unix_ms(1'767'225'660'500);  // a minute and a half second later
  }
  return n;
}

TEST(BackoffTest, DoublesFromInitialUpToMaxWithJitterTakingAShare) {
  BackoffOptions o{
      .initial = absl::Seconds(1), .max = absl::Seconds(30), .multiplier = 2, .jitter = 0.5};
  EXPECT_EQ(BackoffDelay(o, 1, 0.0), absl::Seconds(1));
  EXPECT_EQ(BackoffDelay(o, 2, 0.0), absl::Seconds(2));
  EXPECT_EQ(BackoffDelay(o, 5, 0.0), absl::Seconds(16));
  EXPECT_EQ(BackoffDelay(o, 6, 0.0), absl::Seconds(30));   // capped
  EXPECT_EQ(BackoffDelay(o, 60, 0.0), absl::Seconds(30));  // no overflow far out
  EXPECT_EQ(BackoffDelay(o, 2, 0.5), absl::Milliseconds(1500));
  EXPECT_EQ(BackoffDelay(o, 6, 1.0), absl::Seconds(15));  // at most half of it taken off
  o.jitter = 0;
  EXPECT_EQ(BackoffDelay(o, 3, 0.9), absl::Seconds(4));
}

TEST(NotifierMessagesTest, UrlsInMessagesKeepNoPath) {
  EXPECT_EQ(UrlForLogs("https://hooks.slack.com/services/T0/B0/XXXX"),
            "https://hooks.slack.com/...");
  EXPECT_EQ(UrlForLogs("http://127.0.0.1:9093"), "http://127.0.0.1:9093");
  EXPECT_EQ(UrlForLogs("http://127.0.0.1:9093/"), "http://127.0.0.1:9093/");
}

TEST(HmacTest, KnownVectorFromRfc4231) {
  // RFC 4231, test case 2.
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(HmacTest, SignatureCoversTimestampAndBody) {
  const std::string body = R"({"a":1})";
  EXPECT_EQ(SignatureHeader("s3cret", 1'700'000'000, body),
            "sha256=" + HmacSha256Hex("s3cret", "1700000000." + body));
  EXPECT_NE(SignatureHeader("s3cret", 1'700'000'001, body),
            SignatureHeader("s3cret", 1'700'000'000, body));
  EXPECT_NE(SignatureHeader("s3cret", 1'700'000'000, R"({"a":2})"),
            SignatureHeader("s3cret", 1'700'000'000, body));
}

TEST(PayloadsTest, AlertmanagerAlertHasStableLabelsAndSeverityAsAnnotation) {
  const std::string json = AlertmanagerAlertsJson({Sample("opened")}, "https://vigil.example");
  google::protobuf::Value v;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &v).ok()) << json;
  ASSERT_EQ(v.list_value().values_size(), 1);
  const google::protobuf::Struct& alert = v.list_value().values(0).struct_value();
  EXPECT_THAT(Keys(alert),
              UnorderedElementsAre("labels", "annotations", "startsAt", "generatorURL"));
  const google::protobuf::Struct& labels = Obj(alert, "labels");
  EXPECT_THAT(Keys(labels),
              UnorderedElementsAre("alertname", "incident_id", "service", "vigil_source"));
  EXPECT_EQ(Str(labels, "alertname"), "VigilIncident");
  EXPECT_EQ(Str(labels, "incident_id"), "INC-7");
  EXPECT_EQ(Str(labels, "service"), "rag-api");
  EXPECT_EQ(Str(labels, "vigil_source"), "vigil");
  const google::protobuf::Struct& annotations = Obj(alert, "annotations");
  EXPECT_EQ(Str(annotations, "severity"), "SEV2");
  EXPECT_EQ(Str(annotations, "summary"), "API p95 latency above 2 s");
  EXPECT_EQ(Str(annotations, "incident_url"), "https://vigil.example/incidents/INC-7");
  EXPECT_EQ(Str(alert, "startsAt"), "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(Str(alert, "generatorURL"), "https://vigil.example/incidents/INC-7");

  // An escalation keeps the labels (the same alert in Alertmanager); resolve adds endsAt.
  v1::Notification escalated = Sample("escalated");
  escalated.set_severity(v1::SEV1);
  google::protobuf::Value e;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(AlertmanagerAlertsJson({escalated}, ""), &e)
          .ok());
  const google::protobuf::Struct& ea = e.list_value().values(0).struct_value();
  EXPECT_EQ(Obj(ea, "labels").DebugString(), labels.DebugString());
  EXPECT_EQ(Str(Obj(ea, "annotations"), "severity"), "SEV1");
  EXPECT_EQ(Str(ea, "generatorURL"), "<absent>");  // no external_url, no link
  google::protobuf::Value r;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  AlertmanagerAlertsJson({Sample("resolved")}, ""), &r)
                  .ok());
  EXPECT_EQ(Str(r.list_value().values(0).struct_value(), "endsAt"), "2026-01-01T00:01:00.500Z");
}

TEST(PayloadsTest, GenericWebhookFields) {
  const google::protobuf::Struct o =
      ParseObject(GenericWebhookJson(Sample("acknowledged"), "https://vigil.example"));
  EXPECT_THAT(Keys(o), UnorderedElementsAre("id", "idempotency_key", "incident_id", "kind",
                                            "severity", "title", "summary", "actor", "services",
                                            "agents", "link", "time", "opened_at", "resolved_at"));
  EXPECT_EQ(Str(o, "id"), "42");
  EXPECT_EQ(Str(o, "idempotency_key"), "42");
  EXPECT_EQ(Str(o, "incident_id"), "INC-7");
  EXPECT_EQ(Str(o, "kind"), "acknowledged");
  EXPECT_EQ(Str(o, "severity"), "SEV2");
  EXPECT_EQ(Str(o, "title"), "API p95 latency above 2 s");
  EXPECT_EQ(Str(o, "link"), "https://vigil.example/incidents/INC-7");
  EXPECT_EQ(Str(o, "time"), "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(Str(o, "resolved_at"), "");
  EXPECT_EQ(o.fields().at("services").list_value().values(0).string_value(), "rag-api");
}

TEST(PayloadsTest, JsonStringsAreEscaped) {
  v1::Notification n = Sample("opened");
  n.set_title("quote \" backslash \\ newline \n bell \x07");
  const google::protobuf::Struct o = ParseObject(GenericWebhookJson(n, ""));
  EXPECT_EQ(Str(o, "title"), n.title());
}

TEST(PayloadsTest, PagerDutyEventsV2) {
  const google::protobuf::Struct o =
      ParseObject(PagerDutyJson(Sample("opened"), "R0UTING", "https://vigil.example"));
  EXPECT_THAT(Keys(o),
              UnorderedElementsAre("routing_key", "event_action", "dedup_key", "payload", "links"));
  EXPECT_EQ(Str(o, "routing_key"), "R0UTING");
  EXPECT_EQ(Str(o, "event_action"), "trigger");
  EXPECT_EQ(Str(o, "dedup_key"), "INC-7");
  const google::protobuf::Struct& payload = Obj(o, "payload");
  EXPECT_EQ(Str(payload, "severity"), "error");
  EXPECT_EQ(Str(payload, "source"), "vigil");
  EXPECT_EQ(Str(payload, "summary"), "INC-7: API p95 latency above 2 s");
  EXPECT_EQ(Str(payload, "timestamp"), "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(Str(ParseObject(PagerDutyJson(Sample("acknowledged"), "k", "")), "event_action"),
            "acknowledge");
  EXPECT_EQ(Str(ParseObject(PagerDutyJson(Sample("mitigated"), "k", "")), "event_action"),
            "acknowledge");
  EXPECT_EQ(Str(ParseObject(PagerDutyJson(Sample("resolved"), "k", "")), "event_action"),
            "resolve");
  v1::Notification sev1 = Sample("escalated");
  sev1.set_severity(v1::SEV1);
  const google::protobuf::Struct e = ParseObject(PagerDutyJson(sev1, "k", ""));
  EXPECT_EQ(Str(e, "event_action"), "trigger");
  EXPECT_EQ(Str(Obj(e, "payload"), "severity"), "critical");
  EXPECT_EQ(Str(e, "dedup_key"), "INC-7");  // the same PagerDuty incident
}

TEST(PayloadsTest, SlackText) {
  const google::protobuf::Struct o =
      ParseObject(SlackJson(Sample("resolved"), "https://vigil.example"));
  EXPECT_THAT(Keys(o), ElementsAre("text"));
  EXPECT_THAT(Str(o, "text"), HasSubstr("[SEV2] INC-7 resolved: API p95 latency above 2 s"));
  EXPECT_THAT(Str(o, "text"), HasSubstr("<https://vigil.example/incidents/INC-7|Open in Vigil>"));
}

std::string Header(const OutgoingRequest& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) {
      return v;
    }
  }
  return "<absent>";
}

TEST(PayloadsTest, RequestsCarryTheIdempotencyKeyAndASignatureAReceiverCanCheck) {
  Receiver generic = MakeReceiver("hook", ReceiverType::kWebhook, "http://127.0.0.1:1/h");
  generic.secret = "s3cret";
  const absl::Time now = absl::FromUnixSeconds(1'767'225'601);
  OutgoingRequest r = BuildRequest(generic, Sample("opened"), "", now);
  EXPECT_EQ(r.url, "http://127.0.0.1:1/h");
  EXPECT_EQ(Header(r, "Idempotency-Key"), "42");
  EXPECT_EQ(Header(r, "X-Vigil-Timestamp"), "1767225601");
  // What a receiver does: HMAC of timestamp "." body with the shared secret.
  EXPECT_EQ(Header(r, "X-Vigil-Signature"),
            "sha256=" + HmacSha256Hex("s3cret", "1767225601." + r.body));

  Receiver am = MakeReceiver("am", ReceiverType::kAlertmanager, "http://127.0.0.1:9093/");
  r = BuildRequest(am, Sample("opened"), "", now);
  EXPECT_EQ(r.url, "http://127.0.0.1:9093/api/v2/alerts");
  EXPECT_EQ(Header(r, "Idempotency-Key"), "42");
  EXPECT_EQ(Header(r, "X-Vigil-Signature"), "<absent>");

  // A PagerDuty secret file without routing_key is the routing key: not used to sign.
  Receiver pd = MakeReceiver("pd", ReceiverType::kWebhook, "https://events.example/v2",
                             WebhookFormat::kPagerDuty);
  pd.secret = "ROUTE";
  r = BuildRequest(pd, Sample("opened"), "", now);
  EXPECT_EQ(Str(ParseObject(r.body), "routing_key"), "ROUTE");
  EXPECT_EQ(Header(r, "X-Vigil-Signature"), "<absent>");
  EXPECT_EQ(Header(r, "Idempotency-Key"), "42");
}

v1::TimelineEvent Event(const std::string& incident, const std::string& kind,
                        const std::string& details = "") {
  v1::TimelineEvent e;
  e.set_incident_id(incident);
  e.set_kind(kind);
  e.set_summary(kind + " summary");
  e.set_actor("alice");
  e.set_time_unix_ms(1'767'225'600'000);
  e.set_details_json(details);
  return e;
}

TEST(RouterTest, KindsOfEvents) {
  EXPECT_EQ(NotificationKind(Event("I", "incident_opened")), "opened");
  EXPECT_EQ(NotificationKind(Event("I", "acknowledged")), "acknowledged");
  EXPECT_EQ(NotificationKind(Event("I", "mitigated")), "mitigated");
  EXPECT_EQ(NotificationKind(Event("I", "resolved")), "resolved");
  EXPECT_EQ(NotificationKind(Event("I", "severity_changed", R"({"from":"SEV3","to":"SEV2"})")),
            "escalated");
  // Lowered, or without details: not an escalation.
  EXPECT_EQ(NotificationKind(Event("I", "severity_changed", R"({"from":"SEV1","to":"SEV3"})")),
            std::nullopt);
  EXPECT_EQ(NotificationKind(Event("I", "severity_changed")), std::nullopt);
  EXPECT_EQ(NotificationKind(Event("I", "note")), std::nullopt);
  EXPECT_EQ(NotificationKind(Event("I", "alert_fired")), std::nullopt);
}

v1::Incident Incident(const std::string& id, v1::Severity severity) {
  v1::Incident i;
  i.set_id(id);
  i.set_title("t");
  i.set_severity(severity);
  i.add_services("rag-api");
  i.add_agents("web-1");
  i.add_alert_rules("HighAPILatency");
  i.set_opened_unix_ms(1'767'225'600'000);
  return i;
}

TEST(RouterTest, AlertmanagerGetsNoAcknowledgeAndFiltersApply) {
  Receiver am = MakeReceiver("am", ReceiverType::kAlertmanager);
  Receiver hook = MakeReceiver("hook", ReceiverType::kWebhook);
  const v1::Incident sev2 = Incident("INC-1", v1::SEV2);
  for (const char* kind : {"opened", "escalated", "resolved"}) {
    EXPECT_TRUE(Wants(am, sev2, kind)) << kind;
  }
  EXPECT_FALSE(Wants(am, sev2, "acknowledged"));
  EXPECT_FALSE(Wants(am, sev2, "mitigated"));
  EXPECT_TRUE(Wants(hook, sev2, "acknowledged"));
  EXPECT_TRUE(Wants(hook, sev2, "mitigated"));

  hook.severities = {v1::SEV1};
  EXPECT_FALSE(Wants(hook, sev2, "opened"));
  EXPECT_TRUE(Wants(hook, Incident("INC-2", v1::SEV1), "opened"));
  hook.severities.clear();
  hook.match = {{"service", "rag-api"}, {"alertname", "HighAPILatency"}};
  EXPECT_TRUE(Wants(hook, sev2, "opened"));
  hook.match["agent"] = "web-2";
  EXPECT_FALSE(Wants(hook, sev2, "opened"));
  EXPECT_TRUE(Wants(hook, sev2, "test"));
}

TEST(RouterTest, PlansOneNotificationPerEventAndReceiverFromTheBatchsIncident) {
  NotifyConfig config;
  config.receivers.push_back(MakeReceiver("am", ReceiverType::kAlertmanager));
  config.receivers.push_back(MakeReceiver("hook", ReceiverType::kWebhook));
  v1::Incident incident = Incident("INC-3", v1::SEV3);
  storage::WriteBatch batch;
  batch.Append(Event("INC-3", "incident_opened"));
  batch.Append(Event("INC-3", "alert_fired"));
  batch.Append(Event("INC-3", "acknowledged"));
  incident.set_severity(v1::SEV2);
  batch.Append(Event("INC-3", "severity_changed", R"({"from":"SEV3","to":"SEV2"})"), &incident);
  std::vector<v1::Notification> planned = PlanNotifications(config, batch);
  std::vector<std::string> got;
  for (const v1::Notification& n : planned) {
    got.push_back(n.receiver() + ":" + n.kind());
    EXPECT_EQ(n.incident_id(), "INC-3");
    EXPECT_EQ(n.severity(), v1::SEV2);  // the incident as the batch leaves it
    EXPECT_EQ(n.id(), 0u);              // the store assigns it
  }
  EXPECT_THAT(got, ElementsAre("am:opened", "hook:opened", "hook:acknowledged", "am:escalated",
                               "hook:escalated"));
  EXPECT_TRUE(PlanNotifications(NotifyConfig{}, batch).empty());
}

class NotifyConfigTest : public ::testing::Test {
 protected:
  absl::StatusOr<NotifyConfig> Parse(const std::string& yaml) {
    YAML::Node root = YAML::Load(yaml);
    return ParseNotifyConfig(root["notifications"], "controller.yaml");
  }
  std::string Secret(const std::string& content) {
    const std::string path = dir_.File("secret");
    std::ofstream(path) << content;
    return path;
  }
  testing::TempDir dir_;
};

TEST_F(NotifyConfigTest, ReadsReceivers) {
  const std::string secret = Secret("k3y\n");
  absl::StatusOr<NotifyConfig> c = Parse(absl::StrCat(R"(
notifications:
  external_url: https://vigil.example/
  resend_interval: 30s
  receivers:
    - {name: am, type: alertmanager, url: "http://127.0.0.1:9093"}
    - name: hook
      type: webhook
      url: https://hooks.example/vigil
      secret_file: )",
                                                      secret, R"(
      severities: [SEV1, sev2]
      match: {service: rag-api}
    - {name: pd, type: webhook, format: pagerduty, url: "https://events.pagerduty.com/v2/enqueue",
       routing_key: R1}
    - {name: slack, type: webhook, format: slack, url: "https://hooks.slack.com/services/x"}
)"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->external_url, "https://vigil.example");
  EXPECT_EQ(c->resend_interval, absl::Seconds(30));
  ASSERT_EQ(c->receivers.size(), 4u);
  EXPECT_EQ(c->receivers[0].type, ReceiverType::kAlertmanager);
  const Receiver* hook = c->Find("hook");
  ASSERT_NE(hook, nullptr);
  EXPECT_EQ(hook->secret, "k3y");  // trailing newline dropped
  EXPECT_THAT(hook->severities, UnorderedElementsAre(v1::SEV1, v1::SEV2));
  EXPECT_EQ(hook->match.at("service"), "rag-api");
  EXPECT_EQ(c->Find("pd")->format, WebhookFormat::kPagerDuty);
  EXPECT_EQ(c->Find("pd")->routing_key, "R1");
  EXPECT_EQ(c->Find("slack")->format, WebhookFormat::kSlack);
  EXPECT_EQ(c->Find("nope"), nullptr);
}

TEST_F(NotifyConfigTest, EveryProblemNamesFileLineAndKey) {
  absl::StatusOr<NotifyConfig> c = Parse(R"(
notifications:
  receivers:
    - {name: a, type: pager, url: "http://x:1"}
    - {name: a, type: webhook, url: "ftp://x", secret_file: /nonexistent/secret}
    - {name: b, type: webhook, url: "http://x:1"}
    - {name: c, type: alertmanager, url: "http://x:1", format: slack, match: {team: sre}}
    - {name: d, type: webhook, url: "http://x:1", format: generic, severities: [SEV9],
       secret_file: /nonexistent/secret}
)");
  ASSERT_FALSE(c.ok());
  const std::string m(c.status().message());
  EXPECT_THAT(m, HasSubstr("controller.yaml:4"));
  EXPECT_THAT(m, HasSubstr("key 'notifications.receivers[0].type': 'pager' is not one of"));
  EXPECT_THAT(m, HasSubstr("key 'notifications.receivers[1].name': receiver 'a' is defined twice"));
  EXPECT_THAT(m, HasSubstr("notifications.receivers[1].url"));
  EXPECT_THAT(m, HasSubstr("notifications.receivers[1].secret_file"));
  EXPECT_THAT(m, HasSubstr("/nonexistent/secret"));
  EXPECT_THAT(m, HasSubstr("notifications.receivers[2].secret_file': a generic webhook needs"));
  EXPECT_THAT(m, HasSubstr("notifications.receivers[3].format': only webhook receivers"));
  EXPECT_THAT(m, HasSubstr("notifications.receivers[3].match.team': unknown label"));
  EXPECT_THAT(m, HasSubstr("'SEV9' is not one of SEV1, SEV2, SEV3, SEV4"));
}

TEST_F(NotifyConfigTest, UnknownKeysAndResendBounds) {
  absl::StatusOr<NotifyConfig> c = Parse("notifications: {receviers: []}\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("unknown key 'receviers'"));
  c = Parse("notifications: {resend_interval: 10m}\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("resolve_timeout"));
  c = Parse("other: 1\n");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->empty());
}

}  // namespace
}  // namespace vigil::controller
