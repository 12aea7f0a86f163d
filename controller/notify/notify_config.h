// Where incident notifications go: the `notifications` section of the controller's settings
// file, read into receivers (Alertmanager's API v2, or a webhook in the generic, PagerDuty Events
// v2 or Slack shape) with the severities and labels each one wants. Loading is strict: unknown
// keys, wrong types, bad URLs, unreadable secret files are refused with file, line and key, all
// of them at once. Stateless functions; thread-safe.
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::controller {

enum class ReceiverType { kAlertmanager, kWebhook };
enum class WebhookFormat { kGeneric, kPagerDuty, kSlack };

struct Receiver {
  std::string name;
  ReceiverType type = ReceiverType::kWebhook;
  std::string url;  // Alertmanager: its base URL (…:9093); webhooks: the full URL
  WebhookFormat format = WebhookFormat::kGeneric;
  std::string secret_file;
  // The secret file's content without trailing white space: the HMAC key of generic webhooks,
  // the routing key of PagerDuty ones (unless routing_key is given).
  std::string secret;
  std::string routing_key;
  std::set<v1::Severity> severities;           // empty: every severity
  std::map<std::string, std::string> match;    // service, agent or alertname -> value
  absl::Duration timeout = absl::Seconds(10);  // per request
};

struct NotifyConfig {
  // Links in notifications point at EXTERNAL_URL/incidents/ID; empty: no link.
  std::string external_url;
  std::vector<Receiver> receivers;
  // Open incidents are posted to Alertmanager again this often, well inside its
  // resolve_timeout (5 m by default), so they stay active there.
  absl::Duration resend_interval = absl::Minutes(1);
  // The longest wait between attempts at a receiver that refuses or cannot be reached (the
  // backoff's cap): after an outage, paging resumes at most this long after the receiver is back.
  absl::Duration retry_max = absl::Seconds(30);

  bool empty() const { return receivers.empty(); }
  const Receiver* Find(absl::string_view name) const;
  std::vector<std::string> Names() const;
};

// The keys a `match:` may name: each matches when any of the incident's values equals it.
const std::set<std::string>& MatchKeys();

// Reads the `notifications` node (null: no notifications). `file` names the file in errors, and
// relative secret_file paths are taken as they are (from the working directory). Errors list
// every problem, one a line, "FILE:LINE: key 'notifications.receivers[1].url': why".
absl::StatusOr<NotifyConfig> ParseNotifyConfig(const YAML::Node& node, absl::string_view file);

}  // namespace vigil::controller
