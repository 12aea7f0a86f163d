// Correlation of alerts into incidents, with no I/O: which active incident a firing alert belongs
// to, and what the probable cause and the worst severity of an incident are.
//
// A firing alert joins an active incident when the incident already has that host, when the
// same rule already fires on another of its hosts, or when a dependency links it to a component
// of the incident (`depends_on` labels, either way), within the correlation window. The probable
// cause is the earliest alert on the component that most hosts of the incident depend on.
//
// An ActiveIncident keeps the cause and the severity current as alerts join (O(log n) per alert,
// not a scan of the incident: a fleet-wide event brings fifty thousand alerts in a second), and
// journals each change so a unit of work that fails is taken back without copying the incident.
// Not thread-safe: it lives on the timeline writer's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::controller {

struct ProbableCause {
  std::string cause;   // "host/rule"
  std::string reason;  // why, in a sentence
};

// An incident that is not resolved, with the indexes correlation needs. Change it only through
// its methods (they keep the indexes and the journal); read it freely.
class ActiveIncident {
 public:
  struct AlertRef {
    v1::Alert alert;
    std::vector<std::string> diagnostics;  // the rule's runbook diagnostics
  };
  // How far the journal went; UndoTo takes back every change made after it.
  using Mark = size_t;

  ActiveIncident();
  ~ActiveIncident();
  // The indexes point into the object: moved (map nodes stay put), never copied.
  ActiveIncident(ActiveIncident&&) noexcept;
  ActiveIncident& operator=(ActiveIncident&&) noexcept;
  ActiveIncident(const ActiveIncident&) = delete;
  ActiveIncident& operator=(const ActiveIncident&) = delete;

  const v1::Incident& incident() const { return incident_; }
  absl::Time last_activity() const { return last_activity_; }
  const std::map<std::string, AlertRef>& alerts() const { return alerts_; }
  // Indexes over alerts(), so correlating an alert costs per alert what it costs per incident.
  const std::set<std::string>& hosts() const { return hosts_; }
  const std::map<std::string, std::string>& host_of_rule() const { return host_of_rule_; }
  // service/role/agent -> a host that is it
  const std::map<std::string, std::string>& provider_host() const { return provider_host_; }
  // name -> hosts that depend on it
  const std::map<std::string, std::set<std::string>>& dependents() const { return dependents_; }

  // --- changes, each journaled ---
  // The incident for arbitrary edits (people's updates): journals a copy of it first.
  v1::Incident& EditIncident();
  void SetLastActivity(absl::Time t);
  // Adds `host`, `service` and `rule` to the incident's lists unless there. True when `host` was
  // new to incident().agents().
  bool AddMembers(const std::string& host, const std::string& service, const std::string& rule);
  void SetSeverity(v1::Severity severity);
  void SetProbableCause(std::string cause, std::string reason);
  // Replaces the whole incident (loading it from the store).
  void LoadIncident(const v1::Incident& incident);
  // Puts `alert` on the incident (replacing one with its id) and indexes it for correlation.
  void AddAlert(const v1::Alert& alert, std::vector<std::string> diagnostics);
  // Replaces the stored copy of an alert already on the incident (its state changed); not
  // indexed again, as before. Adds it unindexed when unknown.
  void UpdateAlert(const v1::Alert& alert);

  // --- the journal ---
  Mark JournalMark() const { return journal_.size(); }
  void UndoTo(Mark mark);
  // After a commit: nothing before now will be taken back.
  void ForgetJournal() { journal_.clear(); }

  // --- derived, kept current ---
  // The probable cause; empty when the incident has no alerts. Equal to FindProbableCauseByScan.
  ProbableCause FindProbableCause() const;
  // The worst severity among the alerts and the incident's own (alerts never lower it). Equal to
  // WorstSeverityByScan.
  v1::Severity WorstSeverity() const;
  // Ids of the stale alerts whose AlertKey is `key`.
  std::vector<std::string> StaleAlertsWithKey(const std::string& key) const;

 private:
  struct CauseIndex;
  void Journal(std::function<void(ActiveIncident&)> undo) { journal_.push_back(std::move(undo)); }
  // Index maintenance; the index is rebuilt from alerts_ and dependents_ after an undo.
  void IndexAlert(const v1::Alert& alert);
  void AddDependent(const std::string& name, const std::string& host);
  CauseIndex& Index() const;

  v1::Incident incident_;
  absl::Time last_activity_;
  std::map<std::string, AlertRef> alerts_;  // by alert id
  std::set<std::string> hosts_;
  std::map<std::string, std::string> host_of_rule_;  // rule -> first host it fired on
  std::map<std::string, std::string> provider_host_;
  std::map<std::string, std::set<std::string>> dependents_;
  // Mirrors of incident_'s lists, for membership tests without a scan.
  std::set<std::string> listed_agents_;
  std::set<std::string> listed_services_;
  std::set<std::string> listed_rules_;
  std::vector<std::function<void(ActiveIncident&)>> journal_;
  // Derived from alerts_ and dependents_; null after an undo until next needed.
  mutable std::unique_ptr<CauseIndex> index_;
};

// The identity of an alert across episodes: source, rule, agent and labels (not its state).
std::string AlertKey(const v1::Alert& alert);
// The component an alert is about (service, else role, else host) and the host it is on.
std::string ComponentOf(const v1::Alert& alert);
std::string HostOf(const v1::Alert& alert);
std::string Label(const v1::Alert& alert, const std::string& name);
// "rule on host: expr (value v)", for timelines.
std::string DescribeAlert(const v1::Alert& alert);

// Which active incidents could take an alert: those that share a host, a rule, or a name one
// depends on and the other provides with it, keyed by what their alerts brought. A superset: an
// incident is listed from its first alert with a key until it leaves the active set (a change
// taken back may leave its keys listed), so Correlate checks each candidate as it would without
// the index. It makes an alert's correlation cost grow with the incidents that share something
// with it, not with every active one (thousands of unrelated incidents, each new alert a scan).
class CorrelationCandidates {
 public:
  // `alert` is on the incident `id` (the keys ActiveIncident::AddAlert indexes).
  void Add(const std::string& id, const v1::Alert& alert);
  // The incident left the active set: none of its keys list it any more.
  void Remove(const std::string& id);
  // Ids, in order, of the incidents that may take `alert` (some may have left since).
  std::set<std::string> For(const v1::Alert& alert) const;
  size_t incidents() const { return keys_of_.size(); }

 private:
  void Link(const std::string& id, const std::string& key);
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> ids_by_key_;
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> keys_of_;  // by incident id
};

// The incident `alert` should join among `active`, with the reason; "" when none (a new
// incident). The most recently active candidate wins (the first by id among equals).
std::string Correlate(const std::map<std::string, ActiveIncident>& active, const v1::Alert& alert,
                      absl::Time now, absl::Duration window, std::string* reason);
// The same, visiting only the incidents `candidates` lists: equal to the above whenever
// `candidates` lists every incident of `active` that has a key of `alert`.
std::string Correlate(const std::map<std::string, ActiveIncident>& active,
                      const CorrelationCandidates& candidates, const v1::Alert& alert,
                      absl::Time now, absl::Duration window, std::string* reason);

// The probable cause and worst severity computed from scratch over every alert of the incident:
// the definition the incremental forms are held to (tests), O(alerts x dependents).
ProbableCause FindProbableCauseByScan(const ActiveIncident& active);
v1::Severity WorstSeverityByScan(const ActiveIncident& active);

}  // namespace vigil::controller
