// Correlation of alerts into incidents, with no state of its own and no I/O: which active
// incident a firing alert belongs to, and what the probable cause of an incident is.
//
// A firing alert joins an active incident when the incident already has that host, when the
// same rule already fires on another of its hosts, or when a dependency links it to a component
// of the incident (`depends_on` labels, either way), within the correlation window. The probable
// cause is the earliest alert on the component that most hosts of the incident depend on.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::controller {

// An incident that is not resolved, with the indexes correlation needs. Copyable: a change is
// taken back by restoring a copy.
struct ActiveIncident {
  struct AlertRef {
    v1::Alert alert;
    std::vector<std::string> diagnostics;  // the rule's runbook diagnostics
  };
  v1::Incident incident;
  std::map<std::string, AlertRef> alerts;  // by alert id
  absl::Time last_activity;
  // Indexes over `alerts`, so correlating an alert and naming the cause cost per alert what they
  // cost per incident (a fleet-wide event brings a thousand alerts in a second).
  std::set<std::string> hosts;
  std::map<std::string, std::string> host_of_rule;   // rule -> first host it fired on
  std::map<std::string, std::string> provider_host;  // service/role/agent -> a host that is it
  std::map<std::string, std::set<std::string>> dependents;  // name -> hosts that depend on it

  // Adds `alert` to the indexes.
  void Index(const v1::Alert& alert);
};

// The identity of an alert across episodes: source, rule, agent and labels (not its state).
std::string AlertKey(const v1::Alert& alert);
// The component an alert is about (service, else role, else host) and the host it is on.
std::string ComponentOf(const v1::Alert& alert);
std::string HostOf(const v1::Alert& alert);
std::string Label(const v1::Alert& alert, const std::string& name);
// "rule on host: expr (value v)", for timelines.
std::string DescribeAlert(const v1::Alert& alert);

// The incident `alert` should join among `active`, with the reason; "" when none (a new
// incident). The most recently active candidate wins.
std::string Correlate(const std::map<std::string, ActiveIncident>& active, const v1::Alert& alert,
                      absl::Time now, absl::Duration window, std::string* reason);

struct ProbableCause {
  std::string cause;   // "host/rule"
  std::string reason;  // why, in a sentence
};
// The probable cause of an incident; empty when it has no alerts.
ProbableCause FindProbableCause(const ActiveIncident& active);
// The worst severity among the incident's alerts and its own (alerts never lower it).
v1::Severity WorstSeverity(const ActiveIncident& active);

}  // namespace vigil::controller
