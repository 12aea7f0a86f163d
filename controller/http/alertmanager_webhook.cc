// ParseAlertmanagerWebhook: the JSON goes through protobuf's parser into a google.protobuf.Struct
// (no JSON library beyond what gRPC already brings), which is then walked field by field so that
// every error can name the alert and the field at fault. AlertmanagerReceiver: the checks before
// and after it, cheapest first.
#include "controller/http/alertmanager_webhook.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/ids.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "spdlog/spdlog.h"

namespace vigil::controller {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;
using Labels = std::map<std::string, std::string>;

const Value* Field(const Struct& object, const std::string& name) {
  auto it = object.fields().find(name);
  return it == object.fields().end() ? nullptr : &it->second;
}

// The field's text; "" when it is missing or not a string.
std::string StringField(const Struct& object, const std::string& name) {
  const Value* value = Field(object, name);
  return value != nullptr && value->kind_case() == Value::kStringValue ? value->string_value() : "";
}

// A string-to-string object such as "labels"; a missing or null one is empty.
absl::StatusOr<Labels> StringMap(const Struct& alert, const std::string& name,
                                 const std::string& where) {
  Labels out;
  const Value* value = Field(alert, name);
  if (value == nullptr || value->kind_case() == Value::kNullValue) {
    return out;
  }
  if (value->kind_case() != Value::kStructValue) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: \"%s\" is not an object", where, name));
  }
  for (const auto& [key, item] : value->struct_value().fields()) {
    if (item.kind_case() != Value::kStringValue) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: %s.%s is not a string", where, name, key));
    }
    out[key] = item.string_value();
  }
  return out;
}

v1::Severity SeverityOf(const Labels& labels) {
  auto it = labels.find("severity");
  if (it == labels.end()) {
    return v1::SEV3;
  }
  std::string severity = absl::AsciiStrToLower(it->second);
  if (severity == "critical" || severity == "sev1" || severity == "page") {
    return v1::SEV1;
  }
  if (severity == "error" || severity == "major" || severity == "sev2" || severity == "high") {
    return v1::SEV2;
  }
  if (severity == "warning" || severity == "sev3" || severity == "medium") {
    return v1::SEV3;
  }
  if (severity == "info" || severity == "sev4" || severity == "low" || severity == "none") {
    return v1::SEV4;
  }
  return v1::SEV3;
}

// "db-1:9100" -> "db-1", "[::1]:9100" -> "::1", "http://web-1:8080/probe" -> "web-1".
std::string HostOfInstance(std::string instance) {
  size_t scheme = instance.find("://");
  if (scheme != std::string::npos) {
    instance = instance.substr(scheme + 3);
    instance = instance.substr(0, instance.find('/'));
  }
  if (!instance.empty() && instance.front() == '[') {
    size_t close = instance.find(']');
    return close == std::string::npos ? instance : instance.substr(1, close - 1);
  }
  size_t colon = instance.find(':');
  if (colon != std::string::npos && instance.find(':', colon + 1) == std::string::npos) {
    return instance.substr(0, colon);
  }
  return instance;  // no port, or a bare IPv6 address
}

std::string AgentOf(const Labels& labels) {
  auto agent = labels.find("vigil_agent");
  if (agent != labels.end() && !agent->second.empty()) {
    return agent->second;
  }
  auto instance = labels.find("instance");
  return instance == labels.end() ? "" : HostOfInstance(instance->second);
}

std::string LabelsDigest(const Labels& labels) {
  std::string canonical;
  for (const auto& [key, value] : labels) {
    canonical.append(key);
    canonical.push_back('\0');
    canonical.append(value);
    canonical.push_back('\0');
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(canonical.data(), canonical.size(), digest, &length, EVP_sha256(), nullptr);
  return HexEncode(absl::string_view(reinterpret_cast<const char*>(digest), length));
}

// Unix milliseconds of an RFC 3339 field; 0 for Go's zero time (Alertmanager's "unset") and for a
// missing optional field.
absl::StatusOr<int64_t> TimeField(const Struct& alert, const std::string& name, bool required,
                                  const std::string& where) {
  const Value* value = Field(alert, name);
  if (value == nullptr || value->kind_case() == Value::kNullValue ||
      (value->kind_case() == Value::kStringValue && value->string_value().empty())) {
    if (required) {
      return absl::InvalidArgumentError(absl::StrFormat("%s: no %s", where, name));
    }
    return 0;
  }
  if (value->kind_case() != Value::kStringValue) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %s is not a string", where, name));
  }
  absl::Time time;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, value->string_value(), &time, &error)) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %s \"%s\" is not an RFC 3339 time",
                                                      where, name,
                                                      absl::CHexEscape(value->string_value())));
  }
  if (time < absl::UnixEpoch()) {
    return 0;
  }
  return absl::ToUnixMillis(time);
}

absl::StatusOr<v1::Alert> ParseAlert(const Value& entry, int number,
                                     const std::string& notification_status) {
  std::string where = absl::StrCat("alert ", number);
  if (entry.kind_case() != Value::kStructValue) {
    return absl::InvalidArgumentError(absl::StrCat(where, " is not an object"));
  }
  const Struct& object = entry.struct_value();
  absl::StatusOr<Labels> labels = StringMap(object, "labels", where);
  if (!labels.ok()) {
    return labels.status();
  }
  auto alertname = labels->find("alertname");
  if (alertname == labels->end() || alertname->second.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": no alertname label"));
  }
  absl::StrAppend(&where, " (", alertname->second, ")");
  absl::StatusOr<Labels> annotations = StringMap(object, "annotations", where);
  if (!annotations.ok()) {
    return annotations.status();
  }

  v1::Alert alert;
  alert.set_source("alertmanager");
  alert.set_rule(alertname->second);
  alert.set_severity(SeverityOf(*labels));
  alert.set_agent_id(AgentOf(*labels));
  std::string fingerprint = StringField(object, "fingerprint");
  alert.set_id(absl::StrCat("am-", fingerprint.empty() ? LabelsDigest(*labels) : fingerprint));
  alert.mutable_labels()->insert(labels->begin(), labels->end());

  std::string status = StringField(object, "status");
  if (status.empty()) {
    status = notification_status;
  }
  if (status == "firing") {
    alert.set_state(v1::FIRING);
  } else if (status == "resolved") {
    alert.set_state(v1::RESOLVED);
  } else {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: status \"%s\" is neither \"firing\" nor \"resolved\"", where,
                        absl::CHexEscape(status)));
  }

  auto summary = annotations->find("summary");
  auto description = annotations->find("description");
  if (summary != annotations->end() && !summary->second.empty()) {
    alert.set_summary(summary->second);
  } else if (description != annotations->end()) {
    alert.set_summary(description->second);
  }
  auto runbook_url = annotations->find("runbook_url");
  auto runbook = annotations->find("runbook");
  if (runbook_url != annotations->end() && !runbook_url->second.empty()) {
    alert.set_runbook(runbook_url->second);
  } else if (runbook != annotations->end()) {
    alert.set_runbook(runbook->second);
  }

  absl::StatusOr<int64_t> starts = TimeField(object, "startsAt", /*required=*/true, where);
  if (!starts.ok()) {
    return starts.status();
  }
  absl::StatusOr<int64_t> ends = TimeField(object, "endsAt", /*required=*/false, where);
  if (!ends.ok()) {
    return ends.status();
  }
  alert.set_active_since_unix_ms(*starts);
  alert.set_fired_unix_ms(*starts);
  // A firing alert's endsAt is only Alertmanager's guess of when it times out.
  alert.set_resolved_unix_ms(alert.state() == v1::RESOLVED ? *ends : 0);
  return alert;
}

}  // namespace

absl::StatusOr<std::vector<v1::Alert>> ParseAlertmanagerWebhook(absl::string_view json,
                                                                size_t max_alerts) {
  Struct root;
  auto parsed = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &root);
  if (!parsed.ok()) {
    // protobuf's message is "<what>\n<the text around it>\n<caret>": keep the first line.
    absl::string_view detail(parsed.message().data(), parsed.message().size());
    detail = absl::StripAsciiWhitespace(detail.substr(0, detail.find('\n')));
    detail = absl::StripAsciiWhitespace(absl::StripPrefix(detail, ":"));
    if (absl::StrContains(detail, "Root element must be a message")) {
      detail = "the top level is not an object";
    }
    return absl::InvalidArgumentError(absl::StrCat("webhook body is not JSON: ", detail));
  }
  const Value* alerts = Field(root, "alerts");
  if (alerts == nullptr || alerts->kind_case() != Value::kListValue) {
    return absl::InvalidArgumentError("webhook body has no \"alerts\" list");
  }
  const size_t count = static_cast<size_t>(alerts->list_value().values_size());
  if (count > max_alerts) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "webhook body has %d alerts; at most %d are taken in one notification", count, max_alerts));
  }
  std::string notification_status = StringField(root, "status");
  std::vector<v1::Alert> out;
  out.reserve(alerts->list_value().values_size());
  int number = 0;
  for (const Value& entry : alerts->list_value().values()) {
    absl::StatusOr<v1::Alert> alert = ParseAlert(entry, ++number, notification_status);
    if (!alert.ok()) {
      return alert.status();
    }
    out.push_back(*std::move(alert));
  }
  return out;
}

absl::Status CheckJsonDepth(absl::string_view json, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // whatever is escaped cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "webhook body nests arrays and objects deeper than %d (depth %d at byte %d)", max_depth,
            depth, i));
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return absl::OkStatus();
}

absl::string_view AlertmanagerReceiver::RefusalName(Refusal reason) {
  switch (reason) {
    case Refusal::kUnauthorized:
      return "unauthorized";
    case Refusal::kForbidden:
      return "forbidden";
    case Refusal::kTooLarge:
      return "too_large";
    case Refusal::kRateLimited:
      return "rate_limited";
    case Refusal::kBadRequest:
      return "bad_request";
  }
  return "unknown";
}

AlertmanagerReceiver::AlertmanagerReceiver(Limits limits, Authorize authorize, Sink sink,
                                           const Clock* clock,
                                           std::vector<SelfAlertRule> self_alerts)
    : limits_(limits),
      authorize_(std::move(authorize)),
      sink_(std::move(sink)),
      clock_(clock),
      self_alerts_(std::move(self_alerts)),
      self_dropped_(new std::atomic<uint64_t>[self_alerts_.size() + 1]),
      tokens_(static_cast<double>(limits.max_alerts_per_minute)),
      refilled_at_(clock->Now()) {
  for (size_t i = 0; i <= self_alerts_.size(); ++i) {
    self_dropped_[i].store(0);
  }
}

absl::string_view AlertmanagerReceiver::ReasonName(size_t reason) const {
  return reason == 0 ? kSentByVigilReason : absl::string_view(self_alerts_[reason - 1].name);
}

uint64_t AlertmanagerReceiver::self_alerts_dropped(absl::string_view reason) const {
  for (size_t i = 0; i <= self_alerts_.size(); ++i) {
    if (ReasonName(i) == reason) {
      return self_dropped_[i].load();
    }
  }
  return 0;
}

size_t AlertmanagerReceiver::DropSelfAlerts(std::vector<v1::Alert>& alerts,
                                            const http::HttpRequest& request) {
  const size_t before = alerts.size();
  std::erase_if(alerts, [&](const v1::Alert& alert) {
    const std::optional<size_t> reason = SelfAlertReason(self_alerts_, alert.labels());
    if (!reason.has_value()) {
      return false;
    }
    self_dropped_[*reason].fetch_add(1);
    const absl::Time now = clock_->Now();
    bool log = false;
    uint64_t suppressed = 0;
    {
      absl::MutexLock lock(&log_mu_);
      auto it = self_alert_log_.find(alert.rule());
      if (it == self_alert_log_.end() && self_alert_log_.size() >= kMaxLoggedAlertnames) {
        std::erase_if(self_alert_log_, [&](const auto& entry) {
          return now - entry.second.logged_at >= limits_.self_alert_log_interval;
        });
      }
      if (it == self_alert_log_.end() && self_alert_log_.size() < kMaxLoggedAlertnames) {
        it = self_alert_log_.emplace(alert.rule(), SelfAlertLog{absl::InfinitePast(), 0}).first;
      }
      if (it == self_alert_log_.end()) {
        // Too many distinct alertnames at once: the shared limit paces these lines.
        log = log_limit_.Allow(now, &suppressed);
      } else if (now - it->second.logged_at >= limits_.self_alert_log_interval) {
        log = true;
        suppressed = it->second.suppressed;
        it->second = SelfAlertLog{now, 0};
      } else {
        ++it->second.suppressed;
      }
    }
    if (log) {
      std::string why;
      if (*reason == 0) {
        why = absl::StrCat("Vigil sent it (", kOwnSourceLabel, "=\"", kOwnSourceValue, "\")");
      } else {
        std::vector<std::string> matchers;
        for (const AlertLabelMatcher& m : self_alerts_[*reason - 1].matchers) {
          matchers.push_back(m.text);
        }
        why = absl::StrCat("it is about Vigil itself (webhook_self_alerts '", ReasonName(*reason),
                           "': ", absl::StrJoin(matchers, ", "), ")");
      }
      spdlog::info(
          "Alertmanager webhook: alert {} from {} is not made an incident: {}; {} more of it "
          "dropped since the last line, next line in {} at the earliest",
          absl::CHexEscape(alert.rule()), request.peer.empty() ? "?" : request.peer, why,
          suppressed, absl::FormatDuration(limits_.self_alert_log_interval));
    }
    return true;
  });
  return before - alerts.size();
}

uint64_t AlertmanagerReceiver::refused(Refusal reason) const {
  return refused_[static_cast<size_t>(reason)].load();
}

http::HttpResponse AlertmanagerReceiver::Refuse(Refusal reason, int status,
                                                absl::string_view message,
                                                const http::HttpRequest& request) {
  refused_[static_cast<size_t>(reason)].fetch_add(1);
  if (uint64_t suppressed = 0; log_limit_.Allow(absl::Now(), &suppressed)) {
    spdlog::warn("Alertmanager webhook: refused a request from {} with {} ({} more not logged): {}",
                 request.peer.empty() ? "?" : request.peer, status, suppressed,
                 absl::CHexEscape(message));
  }
  return http::TextResponse(status, message);
}

bool AlertmanagerReceiver::TakeBudget(size_t n, absl::Duration* retry_after) {
  const double per_second = static_cast<double>(limits_.max_alerts_per_minute) / 60.0;
  const double capacity = static_cast<double>(limits_.max_alerts_per_minute);
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  if (now > refilled_at_) {
    tokens_ = std::min(capacity, tokens_ + absl::ToDoubleSeconds(now - refilled_at_) * per_second);
    refilled_at_ = now;
  }
  const double want = static_cast<double>(n);
  if (want <= tokens_) {
    tokens_ -= want;
    return true;
  }
  const double seconds = per_second > 0 ? std::ceil((want - tokens_) / per_second) : 60.0;
  *retry_after = absl::Seconds(std::clamp(seconds, 1.0, 60.0));
  return false;
}

http::HttpResponse AlertmanagerReceiver::Handle(const http::HttpRequest& request) {
  if (absl::Status allowed = authorize_(request); !allowed.ok()) {
    if (absl::IsUnauthenticated(allowed)) {
      http::HttpResponse response = Refuse(Refusal::kUnauthorized, 401, allowed.message(), request);
      response.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"vigil\"");
      return response;
    }
    if (absl::IsPermissionDenied(allowed)) {
      return Refuse(Refusal::kForbidden, 403, allowed.message(), request);
    }
    spdlog::error("Alertmanager webhook: cannot check credentials: {}", allowed.message());
    return http::TextResponse(503, "cannot check credentials now; try again");
  }
  if (request.body.size() > limits_.max_body_bytes) {
    return Refuse(Refusal::kTooLarge, 413,
                  absl::StrFormat("webhook body has %d bytes; at most %d are taken",
                                  request.body.size(), limits_.max_body_bytes),
                  request);
  }
  if (absl::Status depth = CheckJsonDepth(request.body, limits_.max_json_depth); !depth.ok()) {
    return Refuse(Refusal::kBadRequest, 400, depth.message(), request);
  }
  absl::StatusOr<std::vector<v1::Alert>> alerts =
      ParseAlertmanagerWebhook(request.body, limits_.max_alerts_per_request);
  if (!alerts.ok()) {
    if (absl::IsResourceExhausted(alerts.status())) {
      // Always logged: a notification this large loses alerts, and somebody should know.
      refused_[static_cast<size_t>(Refusal::kTooLarge)].fetch_add(1);
      spdlog::error(
          "Alertmanager webhook: refused a notification from {}: {} (lower the "
          "receiver's max_alerts or raise --webhook-max-alerts)",
          request.peer.empty() ? "?" : request.peer, alerts.status().message());
      return http::TextResponse(413, alerts.status().message());
    }
    return Refuse(Refusal::kBadRequest, 400, alerts.status().message(), request);
  }
  // Vigil's own notifications, or Prometheus alerts about Vigil, routed back through
  // Alertmanager would open an incident about the incident system: dropped, the rest go on.
  if (const size_t dropped = DropSelfAlerts(*alerts, request); dropped > 0 && alerts->empty()) {
    return http::TextResponse(
        200, absl::StrCat("dropped ", dropped, " alert(s) sent by Vigil or about it"));
  }
  absl::Duration retry_after;
  if (!TakeBudget(alerts->size(), &retry_after)) {
    http::HttpResponse response =
        Refuse(Refusal::kRateLimited, 503,
               absl::StrFormat("more than %d alerts a minute; retry in %d s",
                               limits_.max_alerts_per_minute, absl::ToInt64Seconds(retry_after)),
               request);
    response.headers.emplace_back("Retry-After", absl::StrCat(absl::ToInt64Seconds(retry_after)));
    return response;
  }
  const size_t n = alerts->size();
  if (absl::Status stored = sink_(std::move(*alerts)); !stored.ok()) {
    store_failures_.fetch_add(1);
    return http::TextResponse(
        503, absl::StrCat("the alerts are not recorded: ", stored.message(),
                          "; nothing was changed, send them again"));
  }
  alerts_accepted_.fetch_add(n);
  return http::TextResponse(200, absl::StrCat("accepted ", n, " alert(s)"));
}

void AlertmanagerReceiver::AppendMetrics(std::string* page) const {
  absl::StrAppend(page,
                  "# HELP vigil_webhook_requests_refused_total Alertmanager webhook requests "
                  "refused, by reason.\n# TYPE vigil_webhook_requests_refused_total counter\n");
  for (int i = 0; i < kRefusalKinds; ++i) {
    absl::StrAppendFormat(page, "vigil_webhook_requests_refused_total{reason=\"%s\"} %d\n",
                          RefusalName(static_cast<Refusal>(i)), refused_[i].load());
  }
  absl::StrAppendFormat(page,
                        "# HELP vigil_webhook_store_failures_total Notifications answered 503 "
                        "because the alerts could not be stored.\n"
                        "# TYPE vigil_webhook_store_failures_total counter\n"
                        "vigil_webhook_store_failures_total %d\n",
                        store_failures_.load());
  absl::StrAppendFormat(page,
                        "# HELP vigil_webhook_alerts_accepted_total Alerts taken from "
                        "Alertmanager.\n# TYPE vigil_webhook_alerts_accepted_total counter\n"
                        "vigil_webhook_alerts_accepted_total %d\n",
                        alerts_accepted_.load());
  absl::StrAppend(page,
                  "# HELP vigil_webhook_self_alerts_dropped_total Alerts the webhook did not make "
                  "incidents because Vigil sent them (reason vigil_source) or they are about "
                  "Vigil (the webhook_self_alerts entry).\n"
                  "# TYPE vigil_webhook_self_alerts_dropped_total counter\n");
  for (size_t i = 0; i <= self_alerts_.size(); ++i) {
    absl::StrAppendFormat(page, "vigil_webhook_self_alerts_dropped_total{reason=\"%s\"} %d\n",
                          ReasonName(i), self_dropped_[i].load());
  }
}

}  // namespace vigil::controller
