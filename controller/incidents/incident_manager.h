// The lifecycle of incidents: alerts open and join them (controller/incidents/correlator.h
// decides where), people acknowledge, annotate, mitigate and resolve them, agents' diagnostics
// land on them; every step is an event on the hash-chained timeline.
//
// All of it runs on the controller's TimelineWriter thread, in order. Each change is made inside
// a Transaction: the incident, its alerts and its timeline event are written together, and the
// in-memory state and anything that leaves the process (diagnostics requests, the published
// alert list, log lines) follow only once that write is stored. A write that fails changes
// nothing: people get the store's error; alerts from the rule engine wait in order and are
// tried again each Tick until the store takes them. Public methods only queue work. Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/incidents/correlator.h"
#include "controller/rules/rule_engine.h"
#include "controller/timeline/timeline_writer.h"
#include "storage/store.h"
#include "vigil/v1/agent_service.pb.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::controller {

// The post-incident checklist of the runbooks.
const std::vector<std::string>& ChecklistItems();

class IncidentManager final : public AlertSink {
 public:
  struct Options {
    absl::Duration correlation_window = absl::Minutes(10);
    // Rule-engine alerts kept, in order, while the store refuses writes; beyond, the oldest go
    // (counted and logged).
    size_t max_alert_backlog = 100'000;
  };
  // Sends a diagnostics request to an agent; false when the agent is not connected.
  using DiagnosticsSender =
      std::function<bool(const std::string& agent_id, const v1::CollectDiagnostics& request)>;
  using UpdateDone = std::function<void(absl::StatusOr<v1::Incident>)>;
  using StoredDone = std::function<void(absl::Status)>;

  IncidentManager(TimelineWriter* writer, const Clock* clock, DiagnosticsSender send_diagnostics,
                  Options options);

  // Loads active incidents from the store (their firing rule alerts turn stale: nobody has
  // judged them since) and the next incident number. Before the writer starts.
  absl::Status Start();

  // AlertSink (from the rule engine): queued.
  void OnAlertChange(const v1::Alert& alert, const Rule* rule) override;
  // Alerts from Alertmanager's webhook, handled like the engine's. `stored` (optional) learns
  // whether they are on disk: OK only once every one of them is.
  void OnExternalAlerts(std::vector<v1::Alert> alerts, StoredDone stored = nullptr);
  // A diagnostics answer from an agent: queued.
  void OnDiagnostics(const std::string& agent_id, const v1::Diagnostics& diagnostics);
  // A person's change (ack, note, mitigate, resolve, check, severity). `done` runs on the writer
  // thread once the change is stored (or refused, or failed to store).
  void Update(v1::UpdateIncidentRequest request, std::string actor, UpdateDone done);
  // Retries rule-engine alerts the store refused. Call about once a second.
  void Tick();

  // Appends an event to an incident's timeline within `txn` (the incident saved with it). On the
  // writer thread only. NOT_FOUND for an unknown incident.
  absl::Status Record(Transaction& txn, const std::string& incident_id, absl::string_view kind,
                      absl::string_view actor, std::string summary, std::string details_json);

  // Called on the writer thread with every stored event, in seq order; must not block.
  int AddListener(TimelineWriter::Listener listener) {
    return writer_->AddListener(std::move(listener));
  }
  void RemoveListener(int id) { writer_->RemoveListener(id); }

  // Pending, firing and stale alerts, oldest first (as stored).
  std::vector<v1::Alert> ActiveAlerts() const;
  size_t active_incidents() const;
  // Rule-engine alerts waiting for the store, and those dropped from that backlog.
  size_t alert_backlog() const;
  uint64_t alerts_dropped() const;
  // Blocks until everything queued before the call has been handled (tests, shutdown).
  void Flush() { writer_->Flush(); }

 private:
  struct DiagnosticsRequest {
    std::string incident_id;
    std::string agent_id;
    absl::Time asked;
  };
  struct QueuedAlert {
    v1::Alert alert;
    std::vector<std::string> diagnostics;
  };
  // Answers come within seconds; requests whose agent went away are forgotten after this.
  static constexpr absl::Duration kDiagnosticsPatience = absl::Minutes(10);

  // --- on the writer thread, inside a transaction ---
  absl::Status HandleAlert(Transaction& txn, const v1::Alert& alert,
                           const std::vector<std::string>& diagnostics);
  void HandleFiring(Transaction& txn, const v1::Alert& alert,
                    const std::vector<std::string>& diagnostics);
  absl::Status HandleDiagnostics(Transaction& txn, const std::string& agent_id,
                                 const v1::Diagnostics& diagnostics);
  absl::StatusOr<v1::Incident> HandleUpdate(Transaction& txn,
                                            const v1::UpdateIncidentRequest& request,
                                            const std::string& actor);
  void Open(Transaction& txn, const v1::Alert& alert,
            const std::vector<std::string>& diagnostics);
  void Join(Transaction& txn, ActiveIncident& active, const v1::Alert& alert,
            const std::vector<std::string>& diagnostics, absl::string_view reason);
  void RequestDiagnostics(Transaction& txn, const std::string& incident_id,
                          const std::string& agent_id, const std::vector<std::string>& names);
  // Recomputes severity and probable cause; appends events for what changed.
  void Reassess(Transaction& txn, ActiveIncident& active);
  // The active incident `id` (created when new), its changes in this unit taken back on
  // rollback.
  ActiveIncident& Edit(Transaction& txn, const std::string& id);
  // The incident `id` as this batch has it: active, or resolved by an earlier unit of the batch
  // that is not committed yet; nullptr when neither (the store has it as it is).
  ActiveIncident* EditCurrent(Transaction& txn, const std::string& id);
  void Append(Transaction& txn, ActiveIncident& active, absl::string_view kind,
              absl::string_view actor, std::string summary, std::string details_json = "");
  void SaveAlert(Transaction& txn, const v1::Alert& alert);
  // Rule-engine alerts: straight to the writer, or behind the backlog while it is not empty.
  void QueueAlert(QueuedAlert queued);
  void SubmitBacklog();

  TimelineWriter* const writer_;
  storage::Store* const store_;
  const Clock* const clock_;
  DiagnosticsSender send_diagnostics_;
  const Options options_;

  // Writer-thread state.
  std::map<std::string, ActiveIncident> active_;          // by incident id
  CorrelationCandidates candidates_;  // which of active_ may take an alert (see Correlate)
  using ActiveNode = std::map<std::string, ActiveIncident>::node_type;
  // Incidents resolved in the batch being written, until it commits (or rolls back).
  std::map<std::string, std::shared_ptr<ActiveNode>> resolving_;
  std::map<std::string, std::string> incident_of_alert_;  // alert id -> incident id
  std::map<std::string, std::string> incident_of_key_;    // alert key -> last incident id
  std::map<std::string, DiagnosticsRequest> diagnostics_requests_;
  uint64_t next_incident_number_ = 1;
  std::deque<QueuedAlert> backlog_;  // rule-engine alerts the store refused, in order
  bool backlog_in_flight_ = false;
  uint64_t backlog_dropped_ = 0;

  mutable absl::Mutex mu_;
  std::map<std::string, v1::Alert> alerts_ ABSL_GUARDED_BY(mu_);  // active alerts by id
  size_t active_count_ ABSL_GUARDED_BY(mu_) = 0;
  size_t backlog_size_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t backlog_dropped_total_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vigil::controller
