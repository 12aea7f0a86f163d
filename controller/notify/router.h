// Which changes of an incident notify whom: a pure function of the notification settings and a
// batch of store writes. The timeline writer calls PlanNotifications on every batch just before
// its commit, so the outbox rows land in the same transaction as the events they report.
// Stateless; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "controller/notify/notify_config.h"
#include "storage/store.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::controller {

// The notification kind of a timeline event: "opened" (incident_opened), "escalated" (a
// severity_changed that raised it, per its details {"from","to"}), "acknowledged", "mitigated",
// "resolved"; nullopt for every other event.
std::optional<std::string> NotificationKind(const v1::TimelineEvent& event);

// True when `receiver` wants `kind` for `incident`: Alertmanager takes opened, escalated and
// resolved (it has no acknowledge), webhooks every kind; then the severity list (empty: all) and
// every match label (service, agent or alertname: any of the incident's values) must agree.
// "test" goes to every receiver.
bool Wants(const Receiver& receiver, const v1::Incident& incident, absl::string_view kind);

// A notification of `kind` for `receiver` from the incident as it is and the event that changed
// it (event may be null: a re-send of the current state).
v1::Notification MakeNotification(const std::string& receiver, absl::string_view kind,
                                  const v1::Incident& incident, const v1::TimelineEvent* event);

// The notifications `batch` calls for, in event order: for each event with a kind, one per
// receiver that wants it, built from the incident as the batch leaves it. An event whose
// incident the batch does not carry notifies nobody (every lifecycle change saves its incident).
std::vector<v1::Notification> PlanNotifications(const NotifyConfig& config,
                                                const storage::WriteBatch& batch);

}  // namespace vigil::controller
