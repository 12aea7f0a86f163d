#include "controller/incidents/incident_manager.h"

#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/model_names.h"
#include "common/status.h"

namespace vigil::controller {
namespace {

std::string Label(const v1::Alert& alert, const std::string& name) {
  auto it = alert.labels().find(name);
  return it == alert.labels().end() ? "" : it->second;
}

// The component an alert is about: its service, else its role, else its host.
std::string ComponentOf(const v1::Alert& alert) {
  for (const char* name : {"service", "role"}) {
    if (std::string v = Label(alert, name); !v.empty()) {
      return v;
    }
  }
  return alert.agent_id().empty() ? "fleet" : alert.agent_id();
}

std::string HostOf(const v1::Alert& alert) {
  return alert.agent_id().empty() ? absl::StrCat("fleet/", ComponentOf(alert)) : alert.agent_id();
}

std::vector<std::string> DependsOn(const v1::Alert& alert) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(Label(alert, "depends_on"), ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) {
      out.emplace_back(part);
    }
  }
  return out;
}

// The names other components' depends_on may use for this one: service, role and host.
std::vector<std::string> ProvidedNames(const v1::Alert& alert) {
  std::vector<std::string> names;
  for (std::string name : {Label(alert, "service"), Label(alert, "role"), alert.agent_id()}) {
    if (!name.empty() && std::find(names.begin(), names.end(), name) == names.end()) {
      names.push_back(std::move(name));
    }
  }
  return names;
}

// A few names of a set, for one line: "a, b, c and 997 more".
std::string NameSome(const std::set<std::string>& names, size_t shown = 5) {
  std::vector<std::string> some;
  for (const std::string& n : names) {
    if (some.size() == shown) {
      break;
    }
    some.push_back(n);
  }
  std::string text = absl::StrJoin(some, ", ");
  if (names.size() > shown) {
    absl::StrAppend(&text, " and ", names.size() - shown, " more");
  }
  return text;
}

std::string FormatValue(double v) {
  if (v != 0 && std::abs(v) < 0.01) {
    return absl::StrFormat("%.4g", v);
  }
  return absl::StrFormat("%.3g", v);
}

std::string TimeOfDay(int64_t ms) {
  return absl::FormatTime("%H:%M:%S", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

std::string Describe(const v1::Alert& alert) {
  std::string where = alert.agent_id().empty() ? absl::StrCat("fleet (", ComponentOf(alert), ")")
                                               : alert.agent_id();
  std::string text = absl::StrCat(alert.rule(), " on ", where);
  if (!alert.expr().empty()) {
    absl::StrAppend(&text, ": ", alert.expr(), " (value ", FormatValue(alert.value()), ")");
  } else if (!alert.summary().empty()) {
    absl::StrAppend(&text, ": ", alert.summary());
  }
  return text;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

int SeverityRank(v1::Severity s) {
  return s == v1::SEVERITY_UNSPECIFIED ? 99 : static_cast<int>(s);
}

void AddUnique(google::protobuf::RepeatedPtrField<std::string>* list, const std::string& value) {
  if (std::find(list->begin(), list->end(), value) == list->end()) {
    list->Add(std::string(value));
  }
}

}  // namespace

const std::vector<std::string>& ChecklistItems() {
  static const std::vector<std::string>* const kItems = new std::vector<std::string>{
      "root_cause_identified", "metrics_back_to_normal", "actions_documented",
      "improvements_planned", "alert_thresholds_reviewed"};
  return *kItems;
}

std::string AlertKey(const v1::Alert& alert) {
  std::map<std::string, std::string> labels(alert.labels().begin(), alert.labels().end());
  labels.erase("stale_reason");
  labels.erase("resolved_reason");
  std::string key = absl::StrCat(alert.source(), "\x1f", alert.rule(), "\x1f", alert.agent_id());
  for (const auto& [k, v] : labels) {
    absl::StrAppend(&key, "\x1f", k, "=", v);
  }
  return key;
}

IncidentManager::IncidentManager(storage::Store* store, const Clock* clock,
                                 DiagnosticsSender send_diagnostics, Options options)
    : store_(store),
      clock_(clock),
      send_diagnostics_(std::move(send_diagnostics)),
      options_(options) {}

IncidentManager::~IncidentManager() { Stop(); }

absl::Status IncidentManager::Start() {
  absl::StatusOr<std::vector<v1::Incident>> all = store_->ListIncidents("all");
  if (!all.ok()) {
    return all.status();
  }
  for (const v1::Incident& incident : *all) {
    uint64_t number = 0;
    if (absl::SimpleAtoi(absl::StripPrefix(incident.id(), "INC-"), &number)) {
      next_incident_number_ = std::max(next_incident_number_, number + 1);
    }
  }
  const absl::Time now = clock_->Now();
  for (const v1::Incident& incident : *all) {
    if (incident.state() == v1::INCIDENT_RESOLVED) {
      continue;
    }
    Active& active = active_[incident.id()];
    active.incident = incident;
    active.last_activity = now;
    absl::StatusOr<std::vector<v1::Alert>> alerts = store_->ListIncidentAlerts(incident.id());
    if (!alerts.ok()) {
      return alerts.status();
    }
    for (v1::Alert& alert : *alerts) {
      incident_of_alert_[alert.id()] = incident.id();
      incident_of_key_[AlertKey(alert)] = incident.id();
      if (alert.state() == v1::FIRING && alert.source() == "rules") {
        // Nobody has judged it since the controller stopped: stale until data says otherwise.
        alert.set_state(v1::STALE);
        (*alert.mutable_labels())["stale_reason"] = "the controller restarted";
        if (absl::Status s = store_->SaveAlert(alert); !s.ok()) {
          return s;
        }
        RETURN_IF_ERROR(Append(incident.id(), "alert_stale", "controller",
                               absl::StrCat(Describe(alert), " is stale: the controller restarted"),
                               ToJson(alert), &active.incident));
      }
      active.alerts[alert.id()] = AlertRef{alert, {}};
      Index(active, alert);
      if (alert.state() != v1::RESOLVED) {
        absl::MutexLock lock(&mu_);
        alerts_[alert.id()] = alert;
      }
    }
  }
  {
    absl::MutexLock lock(&mu_);
    active_count_ = active_.size();
  }
  worker_ = std::thread([this] { WorkerLoop(); });
  return absl::OkStatus();
}

void IncidentManager::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return;
    }
    stopping_ = true;
  }
  if (worker_.joinable()) {
    worker_.join();
  }
}

void IncidentManager::Enqueue(std::function<void()> work) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(work));
}

void IncidentManager::WorkerLoop() {
  while (true) {
    std::function<void()> work;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](IncidentManager* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return !self->queue_.empty() || self->stopping_;
          },
          this));
      if (queue_.empty()) {
        return;  // stopping, and everything queued is done
      }
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    work();
  }
}

void IncidentManager::Flush() {
  absl::Notification done;
  Enqueue([&done] { done.Notify(); });
  done.WaitForNotification();
}

void IncidentManager::OnAlertChange(const v1::Alert& alert, const Rule* rule) {
  std::vector<std::string> diagnostics;
  if (rule != nullptr) {
    diagnostics = rule->diagnostics;
  }
  Enqueue([this, alert, diagnostics = std::move(diagnostics)]() mutable {
    HandleAlert(alert, std::move(diagnostics));
  });
}

void IncidentManager::OnExternalAlerts(std::vector<v1::Alert> alerts) {
  Enqueue([this, alerts = std::move(alerts)] {
    for (const v1::Alert& alert : alerts) {
      HandleAlert(alert, {});
    }
  });
}

void IncidentManager::OnDiagnostics(const std::string& agent_id,
                                    const v1::Diagnostics& diagnostics) {
  Enqueue([this, agent_id, diagnostics] { HandleDiagnostics(agent_id, diagnostics); });
}

void IncidentManager::Update(v1::UpdateIncidentRequest request, std::string actor,
                             UpdateDone done) {
  Enqueue([this, request = std::move(request), actor = std::move(actor), done = std::move(done)] {
    done(HandleUpdate(request, actor));
  });
}

void IncidentManager::Post(std::function<void()> work) { Enqueue(std::move(work)); }

absl::Status IncidentManager::Record(const std::string& incident_id, absl::string_view kind,
                                     absl::string_view actor, std::string summary,
                                     std::string details_json) {
  if (auto active = active_.find(incident_id); active != active_.end()) {
    active->second.last_activity = clock_->Now();
    return Append(incident_id, kind, actor, std::move(summary), std::move(details_json),
                  &active->second.incident);
  }
  absl::StatusOr<std::optional<v1::Incident>> loaded = store_->GetIncident(incident_id);
  if (!loaded.ok()) {
    return loaded.status();
  }
  if (!loaded->has_value()) {
    return absl::NotFoundError(absl::StrCat("no incident '", incident_id, "'"));
  }
  return Append(incident_id, kind, actor, std::move(summary), std::move(details_json), &**loaded);
}

int IncidentManager::AddListener(Listener listener) {
  absl::MutexLock lock(&mu_);
  const int id = next_listener_++;
  listeners_[id] = std::move(listener);
  return id;
}

void IncidentManager::RemoveListener(int id) {
  absl::MutexLock lock(&mu_);
  listeners_.erase(id);
}

std::vector<v1::Alert> IncidentManager::ActiveAlerts() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Alert> out;
  for (const auto& [id, alert] : alerts_) {
    out.push_back(alert);
  }
  std::sort(out.begin(), out.end(), [](const v1::Alert& a, const v1::Alert& b) {
    return a.active_since_unix_ms() < b.active_since_unix_ms();
  });
  return out;
}

size_t IncidentManager::active_incidents() const {
  absl::MutexLock lock(&mu_);
  return active_count_;
}

LogHistogram IncidentManager::append_latency() const {
  absl::MutexLock lock(&mu_);
  return append_latency_;
}

void IncidentManager::PublishAlert(const v1::Alert& alert) {
  absl::MutexLock lock(&mu_);
  if (alert.state() == v1::RESOLVED) {
    alerts_.erase(alert.id());
  } else {
    alerts_[alert.id()] = alert;
  }
}

absl::Status IncidentManager::Append(const std::string& incident_id, absl::string_view kind,
                                     absl::string_view actor, std::string summary,
                                     std::string details_json, const v1::Incident* incident) {
  v1::TimelineEvent event;
  event.set_incident_id(incident_id);
  event.set_time_unix_ms(clock_->NowUnixMillis());
  event.set_kind(std::string(kind));
  event.set_actor(std::string(actor));
  event.set_summary(std::move(summary));
  event.set_details_json(std::move(details_json));
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::TimelineEvent> stored = store_->AppendEvent(std::move(event), incident);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (!stored.ok()) {
    spdlog::error("incident {}: cannot record a {} event: {}", incident_id, kind,
                  stored.status().message());
    return stored.status();
  }
  absl::MutexLock lock(&mu_);
  append_latency_.Add(seconds);
  for (const auto& [id, listener] : listeners_) {
    listener(*stored);
  }
  return absl::OkStatus();
}

void IncidentManager::HandleAlert(const v1::Alert& incoming, std::vector<std::string> diagnostics) {
  v1::Alert alert = incoming;
  PublishAlert(alert);
  if (alert.state() == v1::PENDING) {
    return;  // not an incident yet
  }
  auto known = incident_of_alert_.find(alert.id());
  if (alert.state() == v1::FIRING) {
    if (known == incident_of_alert_.end()) {
      HandleFiring(alert, std::move(diagnostics));
      return;
    }
    auto it = active_.find(known->second);
    if (it == active_.end()) {
      // Its incident was resolved while the alert kept firing: record it there, nothing more.
      alert.set_incident_id(known->second);
      (void)store_->SaveAlert(alert);
      return;
    }
    Active& active = it->second;
    alert.set_incident_id(active.incident.id());
    const v1::Alert before = active.alerts[alert.id()].alert;
    active.alerts[alert.id()].alert = alert;
    (void)store_->SaveAlert(alert);
    active.last_activity = clock_->Now();
    if (before.state() == v1::STALE) {
      (void)Append(active.incident.id(), "alert_fired",
                   alert.agent_id().empty() ? "controller" : alert.agent_id(),
                   absl::StrCat(Describe(alert), " is firing again (it was stale)"), ToJson(alert),
                   &active.incident);
    } else if (before.severity() != alert.severity()) {
      (void)Append(active.incident.id(), "alert_severity", "controller",
                   absl::StrCat(Describe(alert), " is now ", SeverityName(alert.severity()),
                                " (was ", SeverityName(before.severity()), ")"),
                   ToJson(alert), &active.incident);
    }
    Reassess(active);
    return;
  }
  if (alert.fired_unix_ms() == 0 && alert.source() == "rules") {
    return;  // a pending alert that cleared before it fired: never on a timeline
  }
  if (known == incident_of_alert_.end()) {
    return;  // resolved or stale before it ever reached an incident (e.g. Alertmanager resends)
  }
  const std::string incident_id = known->second;
  alert.set_incident_id(incident_id);
  (void)store_->SaveAlert(alert);
  auto it = active_.find(incident_id);
  v1::Incident stored_incident;
  v1::Incident* incident = nullptr;
  if (it != active_.end()) {
    it->second.alerts[alert.id()].alert = alert;
    incident = &it->second.incident;
  } else if (auto loaded = store_->GetIncident(incident_id); loaded.ok() && loaded->has_value()) {
    stored_incident = **loaded;
    incident = &stored_incident;
  }
  if (alert.state() == v1::STALE) {
    (void)Append(incident_id, "alert_stale", "controller",
                 absl::StrCat(Describe(alert), " is stale: ", Label(alert, "stale_reason")),
                 ToJson(alert), incident);
    return;
  }
  // Resolved.
  std::string why = Label(alert, "resolved_reason");
  (void)Append(incident_id, "alert_resolved",
               alert.agent_id().empty() ? "controller" : alert.agent_id(),
               absl::StrCat(Describe(alert), " resolved", why.empty() ? "" : ": ", why),
               ToJson(alert), incident);
  incident_of_alert_.erase(known);
  if (it != active_.end()) {
    // Stale copies of the same alert from before a restart are settled by this answer.
    const std::string key = AlertKey(alert);
    for (auto& [id, ref] : it->second.alerts) {
      if (id != alert.id() && ref.alert.state() == v1::STALE && AlertKey(ref.alert) == key) {
        ref.alert.set_state(v1::RESOLVED);
        ref.alert.set_resolved_unix_ms(alert.resolved_unix_ms());
        (void)store_->SaveAlert(ref.alert);
        PublishAlert(ref.alert);
      }
    }
  }
}

void IncidentManager::HandleFiring(const v1::Alert& alert, std::vector<std::string> diagnostics) {
  // The same alert again (flapping, or after a restart): back to the incident it was on.
  if (auto by_key = incident_of_key_.find(AlertKey(alert)); by_key != incident_of_key_.end()) {
    if (auto it = active_.find(by_key->second); it != active_.end()) {
      Join(it->second, alert, std::move(diagnostics), "the same alert fired here before");
      return;
    }
  }
  std::string reason;
  if (Active* active = Correlate(alert, &reason); active != nullptr) {
    Join(*active, alert, std::move(diagnostics), reason);
    return;
  }
  Open(alert, std::move(diagnostics));
}

void IncidentManager::Index(Active& active, const v1::Alert& alert) {
  const std::string host = HostOf(alert);
  active.hosts.insert(host);
  active.host_of_rule.emplace(alert.rule(), host);
  for (const std::string& name : ProvidedNames(alert)) {
    active.provider_host.emplace(name, host);
  }
  for (const std::string& dependency : DependsOn(alert)) {
    active.dependents[dependency].insert(host);
  }
}

IncidentManager::Active* IncidentManager::Correlate(const v1::Alert& alert, std::string* reason) {
  const absl::Time now = clock_->Now();
  const std::string host = HostOf(alert);
  const std::vector<std::string> provides = ProvidedNames(alert);
  const std::vector<std::string> depends = DependsOn(alert);
  Active* best = nullptr;
  for (auto& [id, active] : active_) {
    if (now - active.last_activity > options_.correlation_window) {
      continue;
    }
    std::string why;
    if (active.hosts.contains(host)) {
      why = absl::StrCat(host, " is already on this incident");
    } else if (auto rule = active.host_of_rule.find(alert.rule());
               rule != active.host_of_rule.end()) {
      why = absl::StrCat(alert.rule(), " is already firing on ", rule->second);
    }
    for (size_t i = 0; why.empty() && i < provides.size(); ++i) {
      if (auto it = active.dependents.find(provides[i]);
          it != active.dependents.end() && !it->second.empty()) {
        why = absl::StrCat(*it->second.begin(), " depends on ", provides[i]);
      }
    }
    for (size_t i = 0; why.empty() && i < depends.size(); ++i) {
      if (auto it = active.provider_host.find(depends[i]); it != active.provider_host.end()) {
        why = absl::StrCat(ComponentOf(alert), " depends on ", depends[i], " (", it->second, ")");
      }
    }
    // The most recently active incident wins when several would take it.
    if (!why.empty() && (best == nullptr || active.last_activity > best->last_activity)) {
      best = &active;
      *reason = why;
    }
  }
  return best;
}

std::string IncidentManager::NextIncidentId() {
  return absl::StrFormat("INC-%04d", next_incident_number_++);
}

void IncidentManager::Open(const v1::Alert& fired, std::vector<std::string> diagnostics) {
  const std::string id = NextIncidentId();
  Active& active = active_[id];
  active.last_activity = clock_->Now();
  v1::Alert alert = fired;
  alert.set_incident_id(id);
  v1::Incident& incident = active.incident;
  incident.set_id(id);
  incident.set_title(alert.summary().empty()
                         ? Describe(alert)
                         : absl::StrCat(alert.summary(), " (", HostOf(alert), ")"));
  incident.set_severity(alert.severity());
  incident.set_state(v1::OPEN);
  incident.set_opened_unix_ms(clock_->NowUnixMillis());
  for (const std::string& item : ChecklistItems()) {
    incident.add_checklist()->set_name(item);
  }
  AddUnique(incident.mutable_agents(), HostOf(alert));
  AddUnique(incident.mutable_services(), ComponentOf(alert));
  AddUnique(incident.mutable_alert_rules(), alert.rule());
  incident.set_probable_cause(absl::StrCat(HostOf(alert), "/", alert.rule()));
  incident.set_probable_cause_reason("the first alert of the incident");
  active.alerts[alert.id()] = AlertRef{alert, diagnostics};
  Index(active, alert);
  incident_of_alert_[alert.id()] = id;
  incident_of_key_[AlertKey(alert)] = id;
  {
    absl::MutexLock lock(&mu_);
    active_count_ = active_.size();
  }
  (void)store_->SaveAlert(alert);
  PublishAlert(alert);
  spdlog::warn("incident {} opened ({}): {}", id, SeverityName(incident.severity()),
               Describe(alert));
  (void)Append(
      id, "incident_opened", "controller",
      absl::StrCat(SeverityName(incident.severity()), " incident opened: ", Describe(alert)),
      ToJson(alert), &incident);
  RequestDiagnostics(active, alert.agent_id(), diagnostics);
}

void IncidentManager::Join(Active& active, const v1::Alert& fired,
                           std::vector<std::string> diagnostics, absl::string_view reason) {
  v1::Incident& incident = active.incident;
  v1::Alert alert = fired;
  alert.set_incident_id(incident.id());
  active.last_activity = clock_->Now();
  const std::string host = HostOf(alert);
  const bool new_host = std::find(incident.agents().begin(), incident.agents().end(), host) ==
                        incident.agents().end();
  AddUnique(incident.mutable_agents(), host);
  AddUnique(incident.mutable_services(), ComponentOf(alert));
  AddUnique(incident.mutable_alert_rules(), alert.rule());
  active.alerts[alert.id()] = AlertRef{alert, diagnostics};
  Index(active, alert);
  incident_of_alert_[alert.id()] = incident.id();
  incident_of_key_[AlertKey(alert)] = incident.id();
  (void)store_->SaveAlert(alert);
  PublishAlert(alert);
  (void)Append(incident.id(), "alert_fired",
               alert.agent_id().empty() ? "controller" : alert.agent_id(),
               absl::StrCat(Describe(alert), " (joined: ", reason, ")"), ToJson(alert), &incident);
  if (new_host) {
    (void)Append(incident.id(), "host_joined", "controller",
                 absl::StrCat(host, " (", ComponentOf(alert), ") joined the incident: ", reason),
                 "", &incident);
    RequestDiagnostics(active, alert.agent_id(), diagnostics);
  }
  Reassess(active);
}

void IncidentManager::RequestDiagnostics(Active& active, const std::string& agent_id,
                                         const std::vector<std::string>& names) {
  if (agent_id.empty() || !send_diagnostics_) {
    return;
  }
  v1::CollectDiagnostics request;
  request.set_request_id(RandomId("diag-"));
  request.set_incident_id(active.incident.id());
  for (const std::string& name : names) {
    request.add_names(name);
  }
  if (!send_diagnostics_(agent_id, request)) {
    (void)Append(active.incident.id(), "diagnostics", "controller",
                 absl::StrCat("cannot ask ", agent_id,
                              " for diagnostics: no agent with that id is connected"),
                 "", &active.incident);
    return;
  }
  const absl::Time now = clock_->Now();
  // Agents that disconnect never answer: forget their requests rather than keep them forever.
  std::erase_if(diagnostics_requests_, [now](const auto& entry) {
    return now - entry.second.asked > kDiagnosticsPatience;
  });
  diagnostics_requests_[request.request_id()] = {active.incident.id(), agent_id, now};
}

void IncidentManager::HandleDiagnostics(const std::string& agent_id,
                                        const v1::Diagnostics& diagnostics) {
  auto it = diagnostics_requests_.find(diagnostics.request_id());
  if (it == diagnostics_requests_.end() || it->second.agent_id != agent_id) {
    return;  // not ours (or a forged answer from another agent)
  }
  const std::string incident_id = it->second.incident_id;
  diagnostics_requests_.erase(it);
  std::vector<std::string> parts;
  for (const v1::DiagnosticTable& table : diagnostics.tables()) {
    parts.push_back(table.error().empty()
                        ? absl::StrCat(table.name(), " (", table.rows_size(), " rows)")
                        : absl::StrCat(table.name(), " (error: ", table.error(), ")"));
  }
  v1::Incident stored;
  v1::Incident* incident = nullptr;
  if (auto active = active_.find(incident_id); active != active_.end()) {
    incident = &active->second.incident;
  } else if (auto loaded = store_->GetIncident(incident_id); loaded.ok() && loaded->has_value()) {
    stored = **loaded;
    incident = &stored;
  }
  (void)Append(
      incident_id, "diagnostics", agent_id,
      absl::StrCat("diagnostics from ", agent_id, ": ",
                   parts.empty() ? "none of the requested tables" : absl::StrJoin(parts, ", ")),
      ToJson(diagnostics), incident);
}

void IncidentManager::Reassess(Active& active) {
  v1::Incident& incident = active.incident;
  // Severity: the worst alert that ever joined (people may raise it; alerts never lower it).
  v1::Severity worst = incident.severity();
  for (const auto& [id, ref] : active.alerts) {
    if (SeverityRank(ref.alert.severity()) < SeverityRank(worst)) {
      worst = ref.alert.severity();
    }
  }
  if (worst != incident.severity()) {
    const v1::Severity before = incident.severity();
    incident.set_severity(worst);
    (void)Append(incident.id(), "severity_changed", "controller",
                 absl::StrCat("severity ", SeverityName(before), " -> ", SeverityName(worst),
                              ": the worst alert on the incident"),
                 "", &incident);
  }
  // Probable cause: the earliest alert on the component most hosts here depend on.
  const v1::Alert* best = nullptr;
  std::set<std::string> best_dependents;
  for (const auto& [id, ref] : active.alerts) {
    std::set<std::string> dependents;
    for (const std::string& name : ProvidedNames(ref.alert)) {
      if (auto it = active.dependents.find(name); it != active.dependents.end()) {
        dependents.insert(it->second.begin(), it->second.end());
      }
    }
    dependents.erase(HostOf(ref.alert));
    if (best == nullptr || dependents.size() > best_dependents.size() ||
        (dependents.size() == best_dependents.size() &&
         ref.alert.fired_unix_ms() < best->fired_unix_ms())) {
      best = &ref.alert;
      best_dependents = std::move(dependents);
    }
  }
  if (best == nullptr) {
    return;
  }
  const std::string cause = absl::StrCat(HostOf(*best), "/", best->rule());
  std::string reason;
  if (best_dependents.empty()) {
    reason = absl::StrCat("the earliest alert (", TimeOfDay(best->fired_unix_ms()),
                          " UTC); no component here depends on another");
  } else {
    reason = absl::StrCat(
        ComponentOf(*best), " on ", HostOf(*best), " is depended on by ", best_dependents.size(),
        " of the ", incident.agents_size(), " hosts on this incident (", NameSome(best_dependents),
        "); ", best->rule(), " fired there at ", TimeOfDay(best->fired_unix_ms()), " UTC");
  }
  if (cause != incident.probable_cause() || reason != incident.probable_cause_reason()) {
    const bool changed = cause != incident.probable_cause();
    incident.set_probable_cause(cause);
    incident.set_probable_cause_reason(reason);
    if (changed) {
      (void)Append(incident.id(), "probable_cause", "controller",
                   absl::StrCat("probable cause: ", cause, " (", reason, ")"), "", &incident);
    } else {
      (void)store_->SaveIncident(incident);
    }
  }
}

absl::StatusOr<v1::Incident> IncidentManager::HandleUpdate(const v1::UpdateIncidentRequest& request,
                                                           const std::string& actor) {
  using Op = v1::UpdateIncidentRequest;
  v1::Incident stored;
  v1::Incident* incident = nullptr;
  auto active = active_.find(request.incident_id());
  if (active != active_.end()) {
    incident = &active->second.incident;
  } else {
    absl::StatusOr<std::optional<v1::Incident>> loaded = store_->GetIncident(request.incident_id());
    if (!loaded.ok()) {
      return loaded.status();
    }
    if (!loaded->has_value()) {
      return absl::NotFoundError(absl::StrCat("no incident '", request.incident_id(), "'"));
    }
    stored = **loaded;
    incident = &stored;
  }
  const int64_t now_ms = clock_->NowUnixMillis();
  const std::string state = IncidentStateName(incident->state());
  const bool resolved = incident->state() == v1::INCIDENT_RESOLVED;
  auto refuse = [&](absl::string_view what) {
    return absl::FailedPreconditionError(
        absl::StrCat("incident ", incident->id(), " is ", state, ": cannot ", what));
  };
  std::string kind;
  std::string summary;
  switch (request.operation()) {
    case Op::ACKNOWLEDGE:
      if (incident->state() != v1::OPEN) {
        return refuse(absl::StrCat(
            "acknowledge it",
            incident->acknowledged_by().empty()
                ? ""
                : absl::StrCat(" (acknowledged by ", incident->acknowledged_by(), ")")));
      }
      incident->set_state(v1::ACKNOWLEDGED);
      incident->set_acknowledged_by(actor);
      incident->set_acknowledged_unix_ms(now_ms);
      kind = "acknowledged";
      summary = absl::StrCat("acknowledged by ", actor);
      break;
    case Op::NOTE:
      if (absl::StripAsciiWhitespace(request.text()).empty()) {
        return absl::InvalidArgumentError("a note needs text");
      }
      kind = "note";
      summary = request.text();
      break;
    case Op::MITIGATE:
      if (resolved || incident->state() == v1::MITIGATED) {
        return refuse("mark it mitigated");
      }
      incident->set_state(v1::MITIGATED);
      incident->set_mitigated_unix_ms(now_ms);
      kind = "mitigated";
      summary = absl::StrCat("mitigated by ", actor,
                             request.text().empty() ? "" : absl::StrCat(": ", request.text()));
      break;
    case Op::RESOLVE:
      if (resolved) {
        return refuse("resolve it again");
      }
      incident->set_state(v1::INCIDENT_RESOLVED);
      incident->set_resolved_unix_ms(now_ms);
      kind = "resolved";
      summary = absl::StrCat("resolved by ", actor,
                             request.text().empty() ? "" : absl::StrCat(": ", request.text()));
      break;
    case Op::CHECK: {
      v1::ChecklistItem* item = nullptr;
      for (v1::ChecklistItem& i : *incident->mutable_checklist()) {
        if (i.name() == request.checklist_item()) {
          item = &i;
        }
      }
      if (item == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("no checklist item '", request.checklist_item(),
                         "' (items: ", absl::StrJoin(ChecklistItems(), ", "), ")"));
      }
      if (item->done()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "checklist item ", item->name(), " was already done by ", item->done_by()));
      }
      item->set_done(true);
      item->set_done_by(actor);
      item->set_done_unix_ms(now_ms);
      kind = "checklist";
      summary = absl::StrCat(item->name(), " done by ", actor,
                             request.text().empty() ? "" : absl::StrCat(": ", request.text()));
      break;
    }
    case Op::SET_SEVERITY: {
      if (request.severity() == v1::SEVERITY_UNSPECIFIED) {
        return absl::InvalidArgumentError("set severity needs SEV1..SEV4");
      }
      if (request.severity() == incident->severity()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "incident ", incident->id(), " is already ", SeverityName(incident->severity())));
      }
      summary = absl::StrCat("severity ", SeverityName(incident->severity()), " -> ",
                             SeverityName(request.severity()), " by ", actor,
                             request.text().empty() ? "" : absl::StrCat(": ", request.text()));
      incident->set_severity(request.severity());
      kind = "severity_changed";
      break;
    }
    default:
      return absl::InvalidArgumentError("unknown operation");
  }
  RETURN_IF_ERROR(Append(incident->id(), kind, actor, summary, "", incident));
  v1::Incident result = *incident;
  if (request.operation() == Op::RESOLVE && active != active_.end()) {
    active_.erase(active);
    absl::MutexLock lock(&mu_);
    active_count_ = active_.size();
  }
  return result;
}

}  // namespace vigil::controller
