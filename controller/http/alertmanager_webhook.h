// The Alertmanager webhook: ParseAlertmanagerWebhook reads the body of a notification (payload
// version 4) into Vigil's Alert messages, so that alerts from an existing Prometheus/Alertmanager
// set-up join the incidents the controller correlates; AlertmanagerReceiver is the HTTP endpoint
// around it, which wants credentials and bounds what one caller can send (size, JSON depth,
// alerts per request and per minute) before anything reaches the incident thread.
// The parsing functions are pure and thread-safe; AlertmanagerReceiver is thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/http/http_message.h"
#include "common/logging.h"
#include "controller/http/self_alerts.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::controller {

// One Alert per entry of "alerts", in order, with source "alertmanager":
//   id        "am-" + fingerprint, or "am-" + hex SHA-256 of the sorted labels without one
//   rule      labels.alertname (required)
//   severity  labels.severity: critical|sev1|page -> SEV1, error|major|sev2|high -> SEV2,
//             warning|sev3|medium -> SEV3, info|sev4|low|none -> SEV4 (any case); else SEV3
//   state     FIRING or RESOLVED from the alert's status (the notification's when it has none)
//   agent_id  labels.vigil_agent, else the host of labels.instance without its port, else ""
//   summary   annotations.summary, else annotations.description
//   runbook   annotations.runbook_url, else annotations.runbook
//   active_since_unix_ms and fired_unix_ms from startsAt; resolved_unix_ms from endsAt for
//   resolved alerts, 0 for firing ones and for Go's zero time "0001-01-01T00:00:00Z".
// InvalidArgument saying what and where, alerts numbered from 1: e.g.
//   alert 2 (HighLatency): startsAt "xyz" is not an RFC 3339 time
// ResourceExhausted, before any alert is converted, when "alerts" holds more than `max_alerts`.
// Call CheckJsonDepth first on untrusted input: the JSON parser recurses.
absl::StatusOr<std::vector<v1::Alert>> ParseAlertmanagerWebhook(
    absl::string_view json, size_t max_alerts = std::numeric_limits<size_t>::max());

// InvalidArgument when arrays and objects in `json` nest deeper than `max_depth`, naming the depth
// and the byte offset. A linear scan that knows strings and escapes and nothing else of JSON.
absl::Status CheckJsonDepth(absl::string_view json, int max_depth);

// POST /api/v1/alertmanager. In order: credentials (401 with `WWW-Authenticate: Bearer`, 403 for
// too low a role), body size (413), JSON depth (400), the notification (400), alerts in it (413
// and a log line), alerts per minute over every caller (503 with Retry-After: Alertmanager
// retries 5xx, not 4xx). Every refusal is counted by reason. Alerts sent by Vigil or about it
// (self_alerts.h) are dropped, counted by reason and logged (once per alertname and
// self_alert_log_interval); the rest go on, and a notification of nothing else is answered 200
// so that Alertmanager does not retry it.
class AlertmanagerReceiver {
 public:
  struct Limits {
    size_t max_body_bytes = 4 * 1024 * 1024;
    int max_json_depth = 32;
    size_t max_alerts_per_request = 1000;
    size_t max_alerts_per_minute = 10000;  // a token bucket: up to this many at once, then refilled
    // An alert about Vigil is logged once per alertname and this interval.
    absl::Duration self_alert_log_interval = absl::Minutes(10);
  };
  // OK when the request may post alerts; Unauthenticated -> 401, PermissionDenied -> 403, any
  // other error -> 503 (e.g. the store cannot be read).
  using Authorize = std::function<absl::Status(const http::HttpRequest&)>;
  // Receives the alerts of an accepted notification and returns once they are stored. An error
  // answers 503 with its message: Alertmanager sends the notification again.
  using Sink = std::function<absl::Status(std::vector<v1::Alert>)>;

  enum class Refusal { kUnauthorized, kForbidden, kTooLarge, kRateLimited, kBadRequest };
  static constexpr int kRefusalKinds = 5;
  static absl::string_view RefusalName(Refusal reason);

  AlertmanagerReceiver(Limits limits, Authorize authorize, Sink sink, const Clock* clock,
                       std::vector<SelfAlertRule> self_alerts = DefaultSelfAlertRules());

  http::HttpResponse Handle(const http::HttpRequest& request);

  uint64_t refused(Refusal reason) const;
  uint64_t alerts_accepted() const { return alerts_accepted_.load(); }
  // Alerts dropped as sent by Vigil (vigil_source="vigil").
  uint64_t own_alerts_dropped() const { return self_dropped_[0].load(); }
  // Alerts dropped as about Vigil, by the name of the matching webhook_self_alerts entry (or
  // kSentByVigilReason); 0 for an unknown name.
  uint64_t self_alerts_dropped(absl::string_view reason) const;
  // The webhook's lines of the /metrics page (Prometheus text format).
  void AppendMetrics(std::string* page) const;

 private:
  http::HttpResponse Refuse(Refusal reason, int status, absl::string_view message,
                            const http::HttpRequest& request);
  // Takes `n` alerts from the per-minute budget; else the wait until they would fit.
  bool TakeBudget(size_t n, absl::Duration* retry_after);
  // Removes the alerts about Vigil from `alerts`, counting and logging them; how many went.
  size_t DropSelfAlerts(std::vector<v1::Alert>& alerts, const http::HttpRequest& request);
  absl::string_view ReasonName(size_t reason) const;

  const Limits limits_;
  const Authorize authorize_;
  const Sink sink_;
  const Clock* clock_;
  std::array<std::atomic<uint64_t>, kRefusalKinds> refused_{};
  std::atomic<uint64_t> alerts_accepted_{0};
  std::atomic<uint64_t> store_failures_{0};
  const std::vector<SelfAlertRule> self_alerts_;
  // By reason: [0] sent by Vigil, [i + 1] self_alerts_[i].
  std::unique_ptr<std::atomic<uint64_t>[]> self_dropped_;
  RateLimitedLog log_limit_{5, absl::Minutes(1)};

  absl::Mutex mu_;
  double tokens_ ABSL_GUARDED_BY(mu_);
  absl::Time refilled_at_ ABSL_GUARDED_BY(mu_);

  // One log line per alertname and interval: a firing alert about Vigil comes back with every
  // group_interval, and one line says enough. Bounded: alertnames come from outside.
  struct SelfAlertLog {
    absl::Time logged_at;
    uint64_t suppressed = 0;
  };
  static constexpr size_t kMaxLoggedAlertnames = 1000;
  absl::Mutex log_mu_;
  std::map<std::string, SelfAlertLog> self_alert_log_ ABSL_GUARDED_BY(log_mu_);
};

}  // namespace vigil::controller
