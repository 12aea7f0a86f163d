// Turns alerts into incidents and keeps each incident's hash-chained timeline.
//
// A firing alert joins an active incident when it is the same alert firing again (flapping),
// when the incident already has that alert on other hosts, or when a dependency links it to a
// component of the incident (`depends_on` labels, either way), within the correlation window;
// otherwise it opens a new one. The probable cause is the earliest alert on the component that
// most hosts of the incident depend on. When an incident opens or a host joins, the agents are
// asked for the runbook's diagnostics, which land on the timeline.
//
// All decisions and store writes happen on one worker thread, in order: the callers (ingest
// thread, HTTP webhook, API) only queue work and never wait on disk. Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/histogram.h"
#include "controller/rules/rule_engine.h"
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
  };
  // Sends a diagnostics request to an agent; false when the agent is not connected.
  using DiagnosticsSender =
      std::function<bool(const std::string& agent_id, const v1::CollectDiagnostics& request)>;
  using Listener = std::function<void(const v1::TimelineEvent& event)>;
  using UpdateDone = std::function<void(absl::StatusOr<v1::Incident>)>;

  IncidentManager(storage::Store* store, const Clock* clock, DiagnosticsSender send_diagnostics,
                  Options options);
  ~IncidentManager() override;

  // Reloads active incidents from the store (their firing alerts turn stale: nobody has judged
  // them since) and starts the worker.
  absl::Status Start();
  void Stop();  // drains the queue first

  // AlertSink (from the rule engine): queued.
  void OnAlertChange(const v1::Alert& alert, const Rule* rule) override;
  // Alerts from Alertmanager's webhook: queued, handled like the engine's.
  void OnExternalAlerts(std::vector<v1::Alert> alerts);
  // A diagnostics answer from an agent: queued.
  void OnDiagnostics(const std::string& agent_id, const v1::Diagnostics& diagnostics);
  // A person's change (ack, note, mitigate, resolve, check, severity). `done` runs on the worker.
  void Update(v1::UpdateIncidentRequest request, std::string actor, UpdateDone done);

  // Runs `work` on the worker thread, after everything queued before it. Remediation shares the
  // worker so the timeline is written by one thread, in order.
  void Post(std::function<void()> work);
  // Appends an event to an incident's timeline. Only on the worker thread (inside Post).
  absl::Status Record(const std::string& incident_id, absl::string_view kind,
                      absl::string_view actor, std::string summary, std::string details_json);

  // Called on the worker thread with every appended event, in seq order; must not block.
  int AddListener(Listener listener);
  void RemoveListener(int id);

  // Pending, firing and stale alerts, oldest first.
  std::vector<v1::Alert> ActiveAlerts() const;
  size_t active_incidents() const;
  // Time spent in Store::AppendEvent, seconds.
  LogHistogram append_latency() const;
  // Blocks until everything queued before the call has been handled (tests, shutdown).
  void Flush();

 private:
  struct AlertRef {
    v1::Alert alert;
    std::vector<std::string> diagnostics;
  };
  struct Active {
    v1::Incident incident;
    std::map<std::string, AlertRef> alerts;  // by alert id
    absl::Time last_activity;
    // Indexes over `alerts`, so correlating an alert and naming the cause cost per alert what
    // they cost per incident (a fleet-wide event brings a thousand alerts in a second).
    std::set<std::string> hosts;
    std::map<std::string, std::string> host_of_rule;   // rule -> first host it fired on
    std::map<std::string, std::string> provider_host;  // service/role/agent -> a host that is it
    std::map<std::string, std::set<std::string>> dependents;  // name -> hosts that depend on it
  };
  static void Index(Active& active, const v1::Alert& alert);
  struct DiagnosticsRequest {
    std::string incident_id;
    std::string agent_id;
    absl::Time asked;
  };
  // Answers come within seconds; requests whose agent went away are forgotten after this.
  static constexpr absl::Duration kDiagnosticsPatience = absl::Minutes(10);

  void Enqueue(std::function<void()> work);
  void WorkerLoop();

  // --- on the worker thread ---
  void HandleAlert(const v1::Alert& alert, std::vector<std::string> diagnostics);
  void HandleFiring(const v1::Alert& alert, std::vector<std::string> diagnostics);
  void HandleDiagnostics(const std::string& agent_id, const v1::Diagnostics& diagnostics);
  absl::StatusOr<v1::Incident> HandleUpdate(const v1::UpdateIncidentRequest& request,
                                            const std::string& actor);
  // The incident an alert should join, with the reason; nullptr when none.
  Active* Correlate(const v1::Alert& alert, std::string* reason);
  void Open(const v1::Alert& alert, std::vector<std::string> diagnostics);
  void Join(Active& active, const v1::Alert& alert, std::vector<std::string> diagnostics,
            absl::string_view reason);
  void RequestDiagnostics(Active& active, const std::string& agent_id,
                          const std::vector<std::string>& names);
  // Recomputes severity and probable cause; appends events for what changed.
  void Reassess(Active& active);
  absl::Status Append(const std::string& incident_id, absl::string_view kind,
                      absl::string_view actor, std::string summary, std::string details_json,
                      const v1::Incident* incident);
  std::string NextIncidentId();
  void PublishAlert(const v1::Alert& alert) ABSL_LOCKS_EXCLUDED(mu_);

  storage::Store* store_;
  const Clock* clock_;
  DiagnosticsSender send_diagnostics_;
  const Options options_;

  // Worker-thread state.
  std::map<std::string, Active> active_;                  // by incident id
  std::map<std::string, std::string> incident_of_alert_;  // alert id -> incident id
  std::map<std::string, std::string> incident_of_key_;    // alert key -> last incident id
  std::map<std::string, DiagnosticsRequest> diagnostics_requests_;
  uint64_t next_incident_number_ = 1;

  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, v1::Alert> alerts_ ABSL_GUARDED_BY(mu_);  // active alerts by id
  size_t active_count_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int, Listener> listeners_ ABSL_GUARDED_BY(mu_);
  int next_listener_ ABSL_GUARDED_BY(mu_) = 1;
  LogHistogram append_latency_ ABSL_GUARDED_BY(mu_);
  std::thread worker_;
};

// The identity of an alert across episodes: rule, agent and its labels (not its state).
std::string AlertKey(const v1::Alert& alert);

}  // namespace vigil::controller
