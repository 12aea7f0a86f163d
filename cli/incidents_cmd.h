// `vigil alerts`, `vigil incidents` and `vigil incident show|ack|note|resolve|mitigate|check|
// severity`: reading and driving the incident lifecycle. Stateless functions; thread-compatible.
#pragma once

#include <ostream>

#include "absl/time/time.h"
#include "cli/command_env.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::cli {

// Registers the verbs on `app`; their actions run against `env`.
void AddIncidentsCommands(CLI::App& app, CommandEnv& env);

// Table: ID, RULE, SEV, STATE, AGENT, VALUE, SINCE, INCIDENT, SUMMARY.
void PrintAlertsTable(const google::protobuf::RepeatedPtrField<v1::Alert>& alerts, absl::Time now,
                      std::ostream& out, absl::string_view indent = "");
// Table: ID, SEV, STATE, TITLE, HOSTS, OPENED, PROBABLE CAUSE.
void PrintIncidentsTable(const v1::ListIncidentsResponse& response, absl::Time now,
                         std::ostream& out);
// Summary block, hosts, probable cause, checklist, alerts, actions, timeline.
void PrintIncidentDetail(const v1::GetIncidentResponse& response, absl::Time now,
                         std::ostream& out);

}  // namespace vigil::cli
