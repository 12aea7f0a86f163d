// The bodies and headers a notification is sent with, per receiver: Alertmanager's API v2
// alerts, the generic webhook (HMAC-SHA256 signed), PagerDuty Events API v2 and Slack incoming
// webhooks. Pure functions of the notification, the receiver and the time; thread-safe.
//
// Signature of generic webhooks (and of any webhook with a secret):
//   X-Vigil-Timestamp: UNIX_SECONDS
//   X-Vigil-Signature: sha256=HEX(HMAC-SHA256(secret, UNIX_SECONDS + "." + BODY))
// A receiver recomputes the MAC, compares in constant time, and refuses a timestamp older than
// a few minutes: a captured request cannot be replayed later, nor its body changed.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "controller/notify/notify_config.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::controller {

// One HTTP request to a receiver.
struct OutgoingRequest {
  std::string url;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

// Lower-case hex of HMAC-SHA256(key, message).
std::string HmacSha256Hex(absl::string_view key, absl::string_view message);
// "sha256=" + HmacSha256Hex(secret, timestamp + "." + body).
std::string SignatureHeader(absl::string_view secret, int64_t unix_seconds, absl::string_view body);

// EXTERNAL_URL/incidents/ID, or "" without an external URL.
std::string IncidentLink(absl::string_view external_url, absl::string_view incident_id);
// RFC 3339 in UTC with milliseconds: 2026-01-02T03:04:05.678Z.
std::string Rfc3339(int64_t unix_ms);

// Alertmanager API v2: a JSON array of postable alerts, one per notification. Identity (labels):
// alertname="VigilIncident", incident_id, service (the first, when known), vigil_source="vigil".
// Severity, title, state and summary are annotations, so an escalation updates the same alert.
// startsAt is when the incident opened; endsAt is set for "resolved" (when it resolved) and for
// "test" (a minute on), absent otherwise.
std::string AlertmanagerAlertsJson(const std::vector<v1::Notification>& notifications,
                                   absl::string_view external_url);

// The generic webhook body: {"id","idempotency_key","incident_id","kind","severity","title",
// "summary","actor","services","agents","link","time","opened_at","resolved_at"}.
std::string GenericWebhookJson(const v1::Notification& n, absl::string_view external_url);
// PagerDuty Events API v2: event_action trigger (opened, escalated, test), acknowledge
// (acknowledged, mitigated) or resolve; dedup_key the incident id, so trigger, acknowledge and
// resolve act on one PagerDuty incident; payload.severity critical|error|warning|info.
std::string PagerDutyJson(const v1::Notification& n, absl::string_view routing_key,
                          absl::string_view external_url);
// Slack incoming webhook: {"text": "..."}; Slack keeps no idempotency key.
std::string SlackJson(const v1::Notification& n, absl::string_view external_url);

// The request that delivers `n` to `receiver` at `now`: Alertmanager gets POST URL/api/v2/alerts;
// webhooks get the format's body with header Idempotency-Key (the outbox id) and, with a secret,
// the signature headers above.
OutgoingRequest BuildRequest(const Receiver& receiver, const v1::Notification& n,
                             absl::string_view external_url, absl::Time now);
// Alertmanager only: several alerts in one request (the periodic re-send of open incidents).
OutgoingRequest BuildAlertmanagerRequest(const Receiver& receiver,
                                         const std::vector<v1::Notification>& notifications,
                                         absl::string_view external_url);

}  // namespace vigil::controller
