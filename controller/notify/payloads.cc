#include "controller/notify/payloads.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/model_names.h"

namespace vigil::controller {
namespace {

// A JSON string literal: quotes, backslashes and control characters escaped; other bytes as
// they are (the texts are UTF-8 already).
std::string Quote(absl::string_view text) {
  std::string out = "\"";
  out.reserve(text.size() + 2);
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out += "\"";
  return out;
}

// Builds one JSON object, fields in the order added.
class Object {
 public:
  Object& Str(absl::string_view key, absl::string_view value) { return Raw(key, Quote(value)); }
  Object& Raw(absl::string_view key, absl::string_view json) {
    absl::StrAppend(&body_, body_.empty() ? "" : ",", Quote(key), ":", json);
    return *this;
  }
  Object& List(absl::string_view key, const google::protobuf::RepeatedPtrField<std::string>& v) {
    std::vector<std::string> quoted;
    for (const std::string& s : v) {
      quoted.push_back(Quote(s));
    }
    return Raw(key, absl::StrCat("[", absl::StrJoin(quoted, ","), "]"));
  }
  std::string Json() const { return absl::StrCat("{", body_, "}"); }

 private:
  std::string body_;
};

std::string TimeOrEmpty(int64_t unix_ms) { return unix_ms > 0 ? Rfc3339(unix_ms) : ""; }

std::string Headline(const v1::Notification& n) {
  return absl::StrCat("[", SeverityName(n.severity()), "] ", n.incident_id(), " ", n.kind(), ": ",
                      n.title());
}

}  // namespace

std::string HmacSha256Hex(absl::string_view key, absl::string_view message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &size);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(mac), static_cast<size_t>(size)));
}

std::string SignatureHeader(absl::string_view secret, int64_t unix_seconds,
                            absl::string_view body) {
  return absl::StrCat("sha256=", HmacSha256Hex(secret, absl::StrCat(unix_seconds, ".", body)));
}

std::string IncidentLink(absl::string_view external_url, absl::string_view incident_id) {
  if (external_url.empty()) {
    return "";
  }
  return absl::StrCat(external_url, "/incidents/", incident_id);
}

std::string Rfc3339(int64_t unix_ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(unix_ms),
                          absl::UTCTimeZone());
}

std::string AlertmanagerAlertsJson(const std::vector<v1::Notification>& notifications,
                                   absl::string_view external_url) {
  std::vector<std::string> alerts;
  for (const v1::Notification& n : notifications) {
    Object labels;
    // Labels that never change in an incident's life (its first service never does either), so
    // the alert keeps one identity: escalations and re-sends update it.
    labels.Str("alertname", "VigilIncident");
    labels.Str("incident_id", n.incident_id());
    if (!n.services().empty()) {
      labels.Str("service", n.services(0));
    }
    labels.Str("vigil_source", "vigil");
    Object annotations;
    annotations.Str("severity", SeverityName(n.severity()));
    annotations.Str("summary", n.title());
    annotations.Str("description", n.summary());
    annotations.Str("vigil_event", n.kind());
    const std::string link = IncidentLink(external_url, n.incident_id());
    if (!link.empty()) {
      annotations.Str("incident_url", link);
    }
    Object alert;
    alert.Raw("labels", labels.Json()).Raw("annotations", annotations.Json());
    const int64_t starts = n.opened_unix_ms() > 0 ? n.opened_unix_ms() : n.time_unix_ms();
    alert.Str("startsAt", Rfc3339(starts));
    if (n.kind() == "resolved") {
      alert.Str("endsAt",
                Rfc3339(n.resolved_unix_ms() > 0 ? n.resolved_unix_ms() : n.time_unix_ms()));
    } else if (n.kind() == "test") {
      alert.Str("endsAt", Rfc3339(n.time_unix_ms() + 60'000));
    }
    if (!link.empty()) {
      alert.Str("generatorURL", link);
    }
    alerts.push_back(alert.Json());
  }
  return absl::StrCat("[", absl::StrJoin(alerts, ","), "]");
}

std::string GenericWebhookJson(const v1::Notification& n, absl::string_view external_url) {
  Object o;
  o.Str("id", absl::StrCat(n.id()))
      .Str("idempotency_key", absl::StrCat(n.id()))
      .Str("incident_id", n.incident_id())
      .Str("kind", n.kind())
      .Str("severity", SeverityName(n.severity()))
      .Str("title", n.title())
      .Str("summary", n.summary())
      .Str("actor", n.actor())
      .List("services", n.services())
      .List("agents", n.agents())
      .Str("link", IncidentLink(external_url, n.incident_id()))
      .Str("time", TimeOrEmpty(n.time_unix_ms()))
      .Str("opened_at", TimeOrEmpty(n.opened_unix_ms()))
      .Str("resolved_at", TimeOrEmpty(n.resolved_unix_ms()));
  return o.Json();
}

std::string PagerDutyJson(const v1::Notification& n, absl::string_view routing_key,
                          absl::string_view external_url) {
  std::string action = "trigger";
  if (n.kind() == "acknowledged" || n.kind() == "mitigated") {
    action = "acknowledge";
  } else if (n.kind() == "resolved") {
    action = "resolve";
  }
  std::string severity = "warning";
  switch (n.severity()) {
    case v1::SEV1:
      severity = "critical";
      break;
    case v1::SEV2:
      severity = "error";
      break;
    case v1::SEV4:
      severity = "info";
      break;
    default:
      break;
  }
  Object details;
  details.Str("kind", n.kind())
      .Str("summary", n.summary())
      .Str("notification_id", absl::StrCat(n.id()))
      .List("services", n.services())
      .List("agents", n.agents());
  Object payload;
  payload.Str("summary", absl::StrCat(n.incident_id(), ": ", n.title()))
      .Str("source", "vigil")
      .Str("severity", severity)
      .Str("timestamp", TimeOrEmpty(n.time_unix_ms()));
  if (!n.services().empty()) {
    payload.Str("component", n.services(0));
  }
  payload.Raw("custom_details", details.Json());
  Object o;
  o.Str("routing_key", routing_key)
      .Str("event_action", action)
      .Str("dedup_key", n.incident_id())
      .Raw("payload", payload.Json());
  if (const std::string link = IncidentLink(external_url, n.incident_id()); !link.empty()) {
    Object href;
    href.Str("href", link).Str("text", "Vigil incident");
    o.Raw("links", absl::StrCat("[", href.Json(), "]"));
  }
  return o.Json();
}

std::string SlackJson(const v1::Notification& n, absl::string_view external_url) {
  std::string text = Headline(n);
  if (!n.summary().empty() && n.summary() != n.title()) {
    absl::StrAppend(&text, "\n", n.summary());
  }
  if (const std::string link = IncidentLink(external_url, n.incident_id()); !link.empty()) {
    absl::StrAppend(&text, "\n<", link, "|Open in Vigil>");
  }
  Object o;
  o.Str("text", text);
  return o.Json();
}

OutgoingRequest BuildAlertmanagerRequest(const Receiver& receiver,
                                         const std::vector<v1::Notification>& notifications,
                                         absl::string_view external_url) {
  OutgoingRequest request;
  request.url = absl::StrCat(absl::StripSuffix(receiver.url, "/"), "/api/v2/alerts");
  request.body = AlertmanagerAlertsJson(notifications, external_url);
  return request;
}

OutgoingRequest BuildRequest(const Receiver& receiver, const v1::Notification& n,
                             absl::string_view external_url, absl::Time now) {
  if (receiver.type == ReceiverType::kAlertmanager) {
    OutgoingRequest request = BuildAlertmanagerRequest(receiver, {n}, external_url);
    request.headers.emplace_back("Idempotency-Key", absl::StrCat(n.id()));
    return request;
  }
  OutgoingRequest request;
  request.url = receiver.url;
  switch (receiver.format) {
    case WebhookFormat::kGeneric:
      request.body = GenericWebhookJson(n, external_url);
      break;
    case WebhookFormat::kPagerDuty:
      request.body = PagerDutyJson(
          n, receiver.routing_key.empty() ? receiver.secret : receiver.routing_key, external_url);
      break;
    case WebhookFormat::kSlack:
      request.body = SlackJson(n, external_url);
      break;
  }
  request.headers.emplace_back("Idempotency-Key", absl::StrCat(n.id()));
  // A PagerDuty secret file without routing_key holds the routing key, not a MAC key.
  const bool signs = !receiver.secret.empty() && (receiver.format != WebhookFormat::kPagerDuty ||
                                                  !receiver.routing_key.empty());
  if (signs) {
    const int64_t ts = absl::ToUnixSeconds(now);
    request.headers.emplace_back("X-Vigil-Timestamp", absl::StrCat(ts));
    request.headers.emplace_back("X-Vigil-Signature",
                                 SignatureHeader(receiver.secret, ts, request.body));
  }
  return request;
}

}  // namespace vigil::controller
