// Reads the body of an Alertmanager webhook notification (payload version 4) into Vigil's Alert
// messages, so that alerts from an existing Prometheus/Alertmanager set-up join the incidents the
// controller correlates. Pure function; thread-safe.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
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
absl::StatusOr<std::vector<v1::Alert>> ParseAlertmanagerWebhook(absl::string_view json);

}  // namespace vigil::controller
