#include "controller/notify/router.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/model_names.h"

namespace vigil::controller {
namespace {

bool AnyEquals(const google::protobuf::RepeatedPtrField<std::string>& values,
               const std::string& wanted) {
  return std::find(values.begin(), values.end(), wanted) != values.end();
}

v1::Severity SeverityFromName(const std::string& name) {
  v1::Severity s = v1::SEVERITY_UNSPECIFIED;
  if (!v1::Severity_Parse(name, &s)) {
    return v1::SEVERITY_UNSPECIFIED;
  }
  return s;
}

}  // namespace

std::optional<std::string> NotificationKind(const v1::TimelineEvent& event) {
  const std::string& kind = event.kind();
  if (kind == "incident_opened") {
    return "opened";
  }
  if (kind == "acknowledged" || kind == "mitigated" || kind == "resolved") {
    return kind;
  }
  if (kind == "severity_changed") {
    google::protobuf::Struct details;
    if (!google::protobuf::util::JsonStringToMessage(event.details_json(), &details).ok()) {
      return std::nullopt;
    }
    auto from = details.fields().find("from");
    auto to = details.fields().find("to");
    if (from == details.fields().end() || to == details.fields().end()) {
      return std::nullopt;
    }
    const v1::Severity before = SeverityFromName(from->second.string_value());
    const v1::Severity after = SeverityFromName(to->second.string_value());
    // SEV1 is the worst: raising a severity lowers its number.
    if (after != v1::SEVERITY_UNSPECIFIED &&
        (before == v1::SEVERITY_UNSPECIFIED || after < before)) {
      return "escalated";
    }
  }
  return std::nullopt;
}

bool Wants(const Receiver& receiver, const v1::Incident& incident, absl::string_view kind) {
  if (kind == "test") {
    return true;
  }
  if (receiver.type == ReceiverType::kAlertmanager &&
      (kind == "acknowledged" || kind == "mitigated")) {
    return false;
  }
  if (!receiver.severities.empty() && receiver.severities.count(incident.severity()) == 0) {
    return false;
  }
  for (const auto& [label, value] : receiver.match) {
    const bool matched = (label == "service" && AnyEquals(incident.services(), value)) ||
                         (label == "agent" && AnyEquals(incident.agents(), value)) ||
                         (label == "alertname" && AnyEquals(incident.alert_rules(), value));
    if (!matched) {
      return false;
    }
  }
  return true;
}

v1::Notification MakeNotification(const std::string& receiver, absl::string_view kind,
                                  const v1::Incident& incident, const v1::TimelineEvent* event) {
  v1::Notification n;
  n.set_receiver(receiver);
  n.set_incident_id(incident.id());
  n.set_kind(std::string(kind));
  n.set_severity(incident.severity());
  n.set_title(incident.title());
  *n.mutable_services() = incident.services();
  *n.mutable_agents() = incident.agents();
  n.set_opened_unix_ms(incident.opened_unix_ms());
  n.set_resolved_unix_ms(incident.resolved_unix_ms());
  if (event != nullptr) {
    n.set_summary(event->summary());
    n.set_actor(event->actor());
    n.set_time_unix_ms(event->time_unix_ms());
  } else {
    n.set_summary(incident.title());
    n.set_time_unix_ms(incident.opened_unix_ms());
  }
  return n;
}

std::vector<v1::Notification> PlanNotifications(const NotifyConfig& config,
                                                const storage::WriteBatch& batch) {
  std::vector<v1::Notification> out;
  if (config.empty()) {
    return out;
  }
  // The incidents as the batch leaves them: the last copy of each wins.
  std::map<std::string, const v1::Incident*> incidents;
  bool any = false;
  for (const storage::WriteBatch::Op& op : batch.ops()) {
    if (const auto* save = std::get_if<storage::WriteBatch::SaveIncident>(&op)) {
      incidents[save->incident.id()] = &save->incident;
    } else if (const auto* append = std::get_if<storage::WriteBatch::AppendEvent>(&op)) {
      if (append->incident.has_value()) {
        incidents[append->incident->id()] = &*append->incident;
      }
      any = any || NotificationKind(append->event).has_value();
    }
  }
  if (!any) {
    return out;
  }
  for (const storage::WriteBatch::Op& op : batch.ops()) {
    const auto* append = std::get_if<storage::WriteBatch::AppendEvent>(&op);
    if (append == nullptr) {
      continue;
    }
    std::optional<std::string> kind = NotificationKind(append->event);
    if (!kind.has_value()) {
      continue;
    }
    auto it = incidents.find(append->event.incident_id());
    if (it == incidents.end()) {
      continue;
    }
    for (const Receiver& receiver : config.receivers) {
      if (Wants(receiver, *it->second, *kind)) {
        out.push_back(MakeNotification(receiver.name, *kind, *it->second, &append->event));
      }
    }
  }
  return out;
}

}  // namespace vigil::controller
