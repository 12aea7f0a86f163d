#include "controller/incidents/incident_manager.h"

#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/model_names.h"
#include "common/status.h"

namespace vigil::controller {
namespace {

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

// The details of a severity_changed event; the notifier tells an escalation (a lower SEV
// number) from them.
std::string SeverityDetails(v1::Severity from, v1::Severity to) {
  return absl::StrCat(R"({"from":")", v1::Severity_Name(from), R"(","to":")", v1::Severity_Name(to),
                      R"("})");
}

std::string ActorOf(const v1::Alert& alert) {
  return alert.agent_id().empty() ? "controller" : alert.agent_id();
}

}  // namespace

const std::vector<std::string>& ChecklistItems() {
  static const std::vector<std::string>* const kItems = new std::vector<std::string>{
      "root_cause_identified", "metrics_back_to_normal", "actions_documented",
      "improvements_planned", "alert_thresholds_reviewed"};
  return *kItems;
}

IncidentManager::IncidentManager(TimelineWriter* writer, const Clock* clock,
                                 DiagnosticsSender send_diagnostics, Options options)
    : writer_(writer),
      store_(writer->store()),
      clock_(clock),
      send_diagnostics_(std::move(send_diagnostics)),
      options_(options) {}

absl::Status IncidentManager::Start() {
  absl::StatusOr<std::vector<v1::Incident>> all = store_->ListIncidents("all");
  if (!all.ok()) {
    return all.status();
  }
  // Incident ids come from the store: the next number is past every stored one, so an id is
  // never handed out twice.
  for (const v1::Incident& incident : *all) {
    uint64_t number = 0;
    if (absl::SimpleAtoi(absl::StripPrefix(incident.id(), "INC-"), &number)) {
      next_incident_number_ = std::max(next_incident_number_, number + 1);
    }
  }
  const absl::Time now = clock_->Now();
  return writer_->RunNow([&](Transaction& txn) -> absl::Status {
    for (const v1::Incident& incident : *all) {
      if (incident.state() == v1::INCIDENT_RESOLVED) {
        continue;
      }
      ActiveIncident& active = Edit(txn, incident.id());
      active.LoadIncident(incident);
      active.SetLastActivity(now);
      ASSIGN_OR_RETURN(std::vector<v1::Alert> alerts, store_->ListIncidentAlerts(incident.id()));
      for (v1::Alert& alert : alerts) {
        txn.PreserveKey(incident_of_alert_, alert.id());
        std::string key = AlertKey(alert);
        txn.PreserveKey(incident_of_key_, key);
        incident_of_alert_[alert.id()] = incident.id();
        incident_of_key_.insert_or_assign(std::move(key), incident.id());
        if (alert.state() == v1::FIRING && alert.source() == "rules") {
          // Nobody has judged it since the controller stopped: stale until the rule engine,
          // which restores it under the same id, says otherwise.
          alert.set_state(v1::STALE);
          (*alert.mutable_labels())["stale_reason"] = "the controller restarted";
          txn.writes().Save(alert);
          Append(txn, active, "alert_stale", "controller",
                 absl::StrCat(DescribeAlert(alert), " is stale: the controller restarted"),
                 ToJson(alert));
        }
        active.AddAlert(alert, {});
        candidates_.Add(incident.id(), alert);
        if (alert.state() != v1::RESOLVED) {
          txn.AfterCommit([this, alert] {
            absl::MutexLock lock(&mu_);
            alerts_[alert.id()] = alert;
          });
        }
      }
    }
    // Pending alerts belong to no incident yet; they are listed too.
    ASSIGN_OR_RETURN(std::vector<v1::Alert> stored, store_->ListAlerts(false));
    for (const v1::Alert& alert : stored) {
      if (alert.state() == v1::PENDING) {
        txn.AfterCommit([this, alert] {
          absl::MutexLock lock(&mu_);
          alerts_[alert.id()] = alert;
        });
      }
    }
    txn.AfterCommit([this] {
      absl::MutexLock lock(&mu_);
      active_count_ = active_.size();
    });
    return absl::OkStatus();
  });
}

void IncidentManager::OnAlertChange(const v1::Alert& alert, const Rule* rule) {
  QueuedAlert queued{alert, {}};
  if (rule != nullptr) {
    queued.diagnostics = rule->diagnostics;
  }
  QueueAlert(std::move(queued));
}

void IncidentManager::QueueAlert(QueuedAlert queued) {
  auto item = std::make_shared<QueuedAlert>(std::move(queued));
  writer_->Submit(
      [this, item](Transaction& txn) -> absl::Status {
        if (!backlog_.empty()) {
          // Alerts stay in order: behind the ones waiting for the store.
          backlog_.push_back(*item);
          txn.OnRollback([this] { backlog_.pop_back(); });
          return absl::OkStatus();
        }
        return HandleAlert(txn, item->alert, item->diagnostics);
      },
      [this, item](const absl::Status& status) {
        if (status.ok()) {
          return;
        }
        // The store refused it: keep it, in order, and try again on Tick.
        backlog_.push_back(*item);
        if (backlog_.size() > options_.max_alert_backlog) {
          backlog_.pop_front();
          ++backlog_dropped_;
          static RateLimitedLog log(5, absl::Minutes(1));
          if (uint64_t suppressed = 0; log.Allow(absl::Now(), &suppressed)) {
            spdlog::error("{} alerts waiting for the database: the oldest is dropped ({} so far)",
                          backlog_.size(), backlog_dropped_);
          }
        }
        absl::MutexLock lock(&mu_);
        backlog_size_ = backlog_.size();
        backlog_dropped_total_ = backlog_dropped_;
      });
}

void IncidentManager::Tick() {
  writer_->Submit([this](Transaction&) {
    SubmitBacklog();
    return absl::OkStatus();
  });
}

void IncidentManager::SubmitBacklog() {
  if (backlog_.empty() || backlog_in_flight_) {
    return;
  }
  backlog_in_flight_ = true;
  auto handled = std::make_shared<size_t>(0);
  writer_->Submit(
      [this, handled](Transaction& txn) -> absl::Status {
        *handled = 0;
        // In order, a bounded number at a time; they leave the backlog once stored.
        for (const QueuedAlert& queued : backlog_) {
          if (*handled == 1000) {
            break;
          }
          RETURN_IF_ERROR(HandleAlert(txn, queued.alert, queued.diagnostics));
          ++*handled;
        }
        return absl::OkStatus();
      },
      [this, handled](const absl::Status& status) {
        backlog_in_flight_ = false;
        if (status.ok()) {
          backlog_.erase(backlog_.begin(), backlog_.begin() + static_cast<ptrdiff_t>(std::min(
                                                                  *handled, backlog_.size())));
          if (backlog_.empty()) {
            spdlog::info("alerts that waited for the database are all recorded");
          } else {
            SubmitBacklog();
          }
        }
        absl::MutexLock lock(&mu_);
        backlog_size_ = backlog_.size();
      });
}

void IncidentManager::OnExternalAlerts(std::vector<v1::Alert> alerts, StoredDone stored) {
  writer_->Submit(
      [this, alerts = std::move(alerts)](Transaction& txn) -> absl::Status {
        for (const v1::Alert& alert : alerts) {
          RETURN_IF_ERROR(HandleAlert(txn, alert, {}));
        }
        return absl::OkStatus();
      },
      std::move(stored));
}

void IncidentManager::OnDiagnostics(const std::string& agent_id,
                                    const v1::Diagnostics& diagnostics) {
  writer_->Submit(
      [this, agent_id, diagnostics](Transaction& txn) {
        return HandleDiagnostics(txn, agent_id, diagnostics);
      },
      [agent_id](const absl::Status& status) {
        if (!status.ok()) {
          spdlog::error("diagnostics from {} are not recorded: {}", agent_id, status.message());
        }
      });
}

void IncidentManager::Update(v1::UpdateIncidentRequest request, std::string actor,
                             UpdateDone done) {
  SubmitForResult<v1::Incident>(
      *writer_,
      [this, request = std::move(request), actor = std::move(actor)](Transaction& txn) {
        return HandleUpdate(txn, request, actor);
      },
      std::move(done));
}

absl::Status IncidentManager::Record(Transaction& txn, const std::string& incident_id,
                                     absl::string_view kind, absl::string_view actor,
                                     std::string summary, std::string details_json) {
  if (ActiveIncident* active = EditCurrent(txn, incident_id); active != nullptr) {
    if (active_.contains(incident_id)) {
      active->SetLastActivity(txn.now());
    }
    Append(txn, *active, kind, actor, std::move(summary), std::move(details_json));
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<v1::Incident>> loaded = store_->GetIncident(incident_id);
  if (!loaded.ok()) {
    return loaded.status();
  }
  if (!loaded->has_value()) {
    return absl::NotFoundError(absl::StrCat("no incident '", incident_id, "'"));
  }
  txn.Append(incident_id, kind, actor, std::move(summary), std::move(details_json), &**loaded);
  return absl::OkStatus();
}

std::vector<v1::Alert> IncidentManager::ActiveAlerts() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Alert> out;
  out.reserve(alerts_.size());
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

size_t IncidentManager::alert_backlog() const {
  absl::MutexLock lock(&mu_);
  return backlog_size_;
}

uint64_t IncidentManager::alerts_dropped() const {
  absl::MutexLock lock(&mu_);
  return backlog_dropped_total_;
}

ActiveIncident& IncidentManager::Edit(Transaction& txn, const std::string& id) {
  auto it = active_.find(id);
  if (it == active_.end()) {
    txn.OnRollback([this, id] { active_.erase(id); });
    it = active_.try_emplace(id).first;
  } else {
    // Its own journal takes the unit's changes back: no copy of the incident.
    txn.OnRollback([this, id, mark = it->second.JournalMark()] {
      if (auto found = active_.find(id); found != active_.end()) {
        found->second.UndoTo(mark);
      }
    });
  }
  txn.AfterCommit([this, id] {
    if (auto found = active_.find(id); found != active_.end()) {
      found->second.ForgetJournal();
    }
  });
  return it->second;
}

ActiveIncident* IncidentManager::EditCurrent(Transaction& txn, const std::string& id) {
  if (active_.contains(id)) {
    return &Edit(txn, id);
  }
  auto it = resolving_.find(id);
  if (it == resolving_.end()) {
    return nullptr;
  }
  ActiveIncident& resolved = it->second->mapped();
  txn.OnRollback(
      [node = it->second, mark = resolved.JournalMark()] { node->mapped().UndoTo(mark); });
  return &resolved;
}

void IncidentManager::Append(Transaction& txn, ActiveIncident& active, absl::string_view kind,
                             absl::string_view actor, std::string summary,
                             std::string details_json) {
  // Saved as it is when the batch commits: once per batch, however many events it gets.
  txn.AppendLive(kind, actor, std::move(summary), std::move(details_json), &active.incident());
}

void IncidentManager::SaveAlert(Transaction& txn, const v1::Alert& alert) {
  txn.writes().Save(alert);
  txn.AfterCommit([this, alert]() mutable {
    absl::MutexLock lock(&mu_);
    if (alert.state() == v1::RESOLVED) {
      alerts_.erase(alert.id());
    } else {
      std::string id = alert.id();
      alerts_.insert_or_assign(std::move(id), std::move(alert));
    }
  });
}

absl::Status IncidentManager::HandleAlert(Transaction& txn, const v1::Alert& incoming,
                                          const std::vector<std::string>& diagnostics) {
  v1::Alert alert = incoming;
  if (alert.state() == v1::PENDING) {
    // Not an incident yet, but stored: a `for` timer outlives a controller restart.
    SaveAlert(txn, alert);
    return absl::OkStatus();
  }
  auto known = incident_of_alert_.find(alert.id());
  if (alert.state() == v1::FIRING) {
    if (known == incident_of_alert_.end()) {
      HandleFiring(txn, alert, diagnostics);
      return absl::OkStatus();
    }
    const std::string incident_id = known->second;
    alert.set_incident_id(incident_id);
    if (!active_.contains(incident_id)) {
      // Its incident was resolved while the alert kept firing: record it there, nothing more.
      SaveAlert(txn, alert);
      return absl::OkStatus();
    }
    ActiveIncident& active = Edit(txn, incident_id);
    const auto known_alert = active.alerts().find(alert.id());
    const v1::Alert before =
        known_alert != active.alerts().end() ? known_alert->second.alert : v1::Alert();
    active.UpdateAlert(alert);
    SaveAlert(txn, alert);
    active.SetLastActivity(txn.now());
    if (before.state() == v1::STALE) {
      Append(txn, active, "alert_fired", ActorOf(alert),
             absl::StrCat(DescribeAlert(alert), " is firing again (it was stale)"), ToJson(alert));
    } else if (before.severity() != alert.severity()) {
      Append(txn, active, "alert_severity", "controller",
             absl::StrCat(DescribeAlert(alert), " is now ", SeverityName(alert.severity()),
                          " (was ", SeverityName(before.severity()), ")"),
             ToJson(alert));
    }
    Reassess(txn, active);
    return absl::OkStatus();
  }
  if (known == incident_of_alert_.end()) {
    // Never on an incident: a pending alert that cleared before it fired, or a resolved or
    // stale alert Alertmanager resends. The engine's own are stored so no pending one lingers.
    if (alert.source() == "rules") {
      SaveAlert(txn, alert);
    }
    return absl::OkStatus();
  }
  const std::string incident_id = known->second;
  alert.set_incident_id(incident_id);
  SaveAlert(txn, alert);
  v1::Incident stored_incident;
  v1::Incident* incident = nullptr;
  ActiveIncident* active = EditCurrent(txn, incident_id);
  if (active != nullptr) {
    active->UpdateAlert(alert);
  } else {
    ASSIGN_OR_RETURN(std::optional<v1::Incident> loaded, store_->GetIncident(incident_id));
    if (loaded.has_value()) {
      stored_incident = *loaded;
      incident = &stored_incident;
    }
  }
  // An active incident is saved as it is at the commit; another as the store has it.
  auto append = [&](absl::string_view kind, absl::string_view actor, std::string summary) {
    if (active != nullptr) {
      Append(txn, *active, kind, actor, std::move(summary), ToJson(alert));
    } else {
      txn.Append(incident_id, kind, actor, std::move(summary), ToJson(alert), incident);
    }
  };
  if (alert.state() == v1::STALE) {
    append("alert_stale", "controller",
           absl::StrCat(DescribeAlert(alert), " is stale: ", Label(alert, "stale_reason")));
    return absl::OkStatus();
  }
  // Resolved.
  const std::string why = Label(alert, "resolved_reason");
  append("alert_resolved", ActorOf(alert),
         absl::StrCat(DescribeAlert(alert), " resolved", why.empty() ? "" : ": ", why));
  txn.PreserveKey(incident_of_alert_, alert.id());
  incident_of_alert_.erase(alert.id());
  if (active != nullptr) {
    // Stale copies of the same alert from before a restart are settled by this answer.
    for (const std::string& id : active->StaleAlertsWithKey(AlertKey(alert))) {
      if (id == alert.id()) {
        continue;
      }
      v1::Alert settled = active->alerts().at(id).alert;
      settled.set_state(v1::RESOLVED);
      settled.set_resolved_unix_ms(alert.resolved_unix_ms());
      active->UpdateAlert(settled);
      SaveAlert(txn, settled);
    }
  }
  return absl::OkStatus();
}

void IncidentManager::HandleFiring(Transaction& txn, const v1::Alert& alert,
                                   const std::vector<std::string>& diagnostics) {
  // The same alert again (flapping, or after a restart): back to the incident it was on.
  if (auto by_key = incident_of_key_.find(AlertKey(alert)); by_key != incident_of_key_.end()) {
    if (active_.contains(by_key->second)) {
      Join(txn, Edit(txn, by_key->second), alert, diagnostics, "the same alert fired here before");
      return;
    }
  }
  std::string reason;
  if (std::string id =
          Correlate(active_, candidates_, alert, txn.now(), options_.correlation_window, &reason);
      !id.empty()) {
    Join(txn, Edit(txn, id), alert, diagnostics, reason);
    return;
  }
  Open(txn, alert, diagnostics);
}

void IncidentManager::Open(Transaction& txn, const v1::Alert& fired,
                           const std::vector<std::string>& diagnostics) {
  txn.Preserve(next_incident_number_);
  const std::string id = absl::StrFormat("INC-%04d", next_incident_number_++);
  ActiveIncident& active = Edit(txn, id);
  active.SetLastActivity(txn.now());
  v1::Alert alert = fired;
  alert.set_incident_id(id);
  v1::Incident& incident = active.EditIncident();
  incident.set_id(id);
  incident.set_title(alert.summary().empty()
                         ? DescribeAlert(alert)
                         : absl::StrCat(alert.summary(), " (", HostOf(alert), ")"));
  incident.set_severity(alert.severity());
  incident.set_state(v1::OPEN);
  incident.set_opened_unix_ms(absl::ToUnixMillis(txn.now()));
  for (const std::string& item : ChecklistItems()) {
    incident.add_checklist()->set_name(item);
  }
  incident.set_probable_cause(absl::StrCat(HostOf(alert), "/", alert.rule()));
  incident.set_probable_cause_reason("the first alert of the incident");
  active.AddMembers(HostOf(alert), ComponentOf(alert), alert.rule());
  active.AddAlert(alert, diagnostics);
  candidates_.Add(id, alert);
  txn.PreserveKey(incident_of_alert_, alert.id());
  std::string key = AlertKey(alert);
  txn.PreserveKey(incident_of_key_, key);
  incident_of_alert_[alert.id()] = id;
  incident_of_key_.insert_or_assign(std::move(key), id);
  SaveAlert(txn, alert);
  const v1::Severity severity = active.incident().severity();
  Append(txn, active, "incident_opened", "controller",
         absl::StrCat(SeverityName(severity), " incident opened: ", DescribeAlert(alert)),
         ToJson(alert));
  txn.AfterCommit([this, id, severity, text = DescribeAlert(alert)] {
    spdlog::warn("incident {} opened ({}): {}", id, SeverityName(severity), text);
    absl::MutexLock lock(&mu_);
    active_count_ = active_.size();
  });
  RequestDiagnostics(txn, id, alert.agent_id(), diagnostics);
}

void IncidentManager::Join(Transaction& txn, ActiveIncident& active, const v1::Alert& fired,
                           const std::vector<std::string>& diagnostics, absl::string_view reason) {
  const v1::Incident& incident = active.incident();
  v1::Alert alert = fired;
  alert.set_incident_id(incident.id());
  active.SetLastActivity(txn.now());
  const std::string host = HostOf(alert);
  const bool new_host = active.AddMembers(host, ComponentOf(alert), alert.rule());
  active.AddAlert(alert, diagnostics);
  candidates_.Add(incident.id(), alert);
  txn.PreserveKey(incident_of_alert_, alert.id());
  std::string key = AlertKey(alert);
  txn.PreserveKey(incident_of_key_, key);
  incident_of_alert_[alert.id()] = incident.id();
  incident_of_key_.insert_or_assign(std::move(key), incident.id());
  SaveAlert(txn, alert);
  Append(txn, active, "alert_fired", ActorOf(alert),
         absl::StrCat(DescribeAlert(alert), " (joined: ", reason, ")"), ToJson(alert));
  if (new_host) {
    Append(txn, active, "host_joined", "controller",
           absl::StrCat(host, " (", ComponentOf(alert), ") joined the incident: ", reason));
    RequestDiagnostics(txn, incident.id(), alert.agent_id(), diagnostics);
  }
  Reassess(txn, active);
}

void IncidentManager::RequestDiagnostics(Transaction& txn, const std::string& incident_id,
                                         const std::string& agent_id,
                                         const std::vector<std::string>& names) {
  if (agent_id.empty() || !send_diagnostics_) {
    return;
  }
  v1::CollectDiagnostics request;
  request.set_request_id(RandomId("diag-"));
  request.set_incident_id(incident_id);
  for (const std::string& name : names) {
    request.add_names(name);
  }
  // Asked only once the incident is stored: an agent never answers for an incident that is not.
  txn.AfterCommit([this, request, agent_id, incident_id] {
    if (!send_diagnostics_(agent_id, request)) {
      const std::string why = absl::StrCat("cannot ask ", agent_id,
                                           " for diagnostics: no agent with that id is connected");
      writer_->Submit([this, incident_id, why](Transaction& txn) {
        return Record(txn, incident_id, "diagnostics", "controller", why, "");
      });
      return;
    }
    const absl::Time now = clock_->Now();
    // Agents that disconnect never answer: forget their requests rather than keep them forever.
    std::erase_if(diagnostics_requests_, [now](const auto& entry) {
      return now - entry.second.asked > kDiagnosticsPatience;
    });
    diagnostics_requests_[request.request_id()] = {incident_id, agent_id, now};
  });
}

absl::Status IncidentManager::HandleDiagnostics(Transaction& txn, const std::string& agent_id,
                                                const v1::Diagnostics& diagnostics) {
  auto it = diagnostics_requests_.find(diagnostics.request_id());
  if (it == diagnostics_requests_.end() || it->second.agent_id != agent_id) {
    return absl::OkStatus();  // not ours (or a forged answer from another agent)
  }
  const std::string incident_id = it->second.incident_id;
  txn.PreserveKey(diagnostics_requests_, diagnostics.request_id());
  diagnostics_requests_.erase(diagnostics.request_id());
  std::vector<std::string> parts;
  for (const v1::DiagnosticTable& table : diagnostics.tables()) {
    parts.push_back(table.error().empty()
                        ? absl::StrCat(table.name(), " (", table.rows_size(), " rows)")
                        : absl::StrCat(table.name(), " (error: ", table.error(), ")"));
  }
  return Record(
      txn, incident_id, "diagnostics", agent_id,
      absl::StrCat("diagnostics from ", agent_id, ": ",
                   parts.empty() ? "none of the requested tables" : absl::StrJoin(parts, ", ")),
      ToJson(diagnostics));
}

void IncidentManager::Reassess(Transaction& txn, ActiveIncident& active) {
  const v1::Incident& incident = active.incident();
  // Severity: the worst alert that ever joined (people may raise it; alerts never lower it).
  if (const v1::Severity worst = active.WorstSeverity(); worst != incident.severity()) {
    const v1::Severity before = incident.severity();
    active.SetSeverity(worst);
    Append(txn, active, "severity_changed", "controller",
           absl::StrCat("severity ", SeverityName(before), " -> ", SeverityName(worst),
                        ": the worst alert on the incident"),
           SeverityDetails(before, worst));
  }
  ProbableCause found = active.FindProbableCause();
  if (found.cause.empty()) {
    return;
  }
  if (found.cause != incident.probable_cause() ||
      found.reason != incident.probable_cause_reason()) {
    const bool changed = found.cause != incident.probable_cause();
    std::string summary = absl::StrCat("probable cause: ", found.cause, " (", found.reason, ")");
    active.SetProbableCause(std::move(found.cause), std::move(found.reason));
    if (changed) {
      Append(txn, active, "probable_cause", "controller", std::move(summary));
    } else {
      txn.SaveLive(&active.incident());
    }
  }
}

absl::StatusOr<v1::Incident> IncidentManager::HandleUpdate(Transaction& txn,
                                                           const v1::UpdateIncidentRequest& request,
                                                           const std::string& actor) {
  using Op = v1::UpdateIncidentRequest;
  v1::Incident stored;
  v1::Incident* incident = nullptr;
  ActiveIncident* active = EditCurrent(txn, request.incident_id());
  if (active != nullptr) {
    incident = &active->EditIncident();
  } else {
    ASSIGN_OR_RETURN(std::optional<v1::Incident> loaded,
                     store_->GetIncident(request.incident_id()));
    if (!loaded.has_value()) {
      return absl::NotFoundError(absl::StrCat("no incident '", request.incident_id(), "'"));
    }
    stored = *loaded;
    incident = &stored;
  }
  const int64_t now_ms = absl::ToUnixMillis(txn.now());
  const std::string state = IncidentStateName(incident->state());
  const bool resolved = incident->state() == v1::INCIDENT_RESOLVED;
  auto refuse = [&](absl::string_view what) {
    return absl::FailedPreconditionError(
        absl::StrCat("incident ", incident->id(), " is ", state, ": cannot ", what));
  };
  std::string kind;
  std::string details;
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
      details = SeverityDetails(incident->severity(), request.severity());
      incident->set_severity(request.severity());
      kind = "severity_changed";
      break;
    }
    default:
      return absl::InvalidArgumentError("unknown operation");
  }
  v1::Incident result = *incident;
  if (active == nullptr) {
    txn.Append(incident->id(), kind, actor, summary, details, incident);
    return result;
  }
  Append(txn, *active, kind, actor, summary, details);
  if (request.operation() == Op::RESOLVE) {
    // Out of the active set, but kept (same address) until the batch is settled: the commit
    // saves it as it is, and a rollback puts it back.
    // Later units of the batch find it in resolving_, not in the store, which has it only once
    // the batch commits.
    auto node = std::make_shared<ActiveNode>(active_.extract(request.incident_id()));
    resolving_[request.incident_id()] = node;
    txn.OnRollback([this, node] { active_.insert(std::move(*node)); });
    txn.OnRollback([this, id = request.incident_id()] { resolving_.erase(id); });
    txn.AfterCommit([this, id = request.incident_id()] {
      resolving_.erase(id);
      candidates_.Remove(id);  // only now: a rollback puts the incident back, keys and all
    });
    txn.AfterCommit([this] {
      absl::MutexLock lock(&mu_);
      active_count_ = active_.size();
    });
  }
  return result;
}

}  // namespace vigil::controller
