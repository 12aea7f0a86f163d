// `vigil agents`, `vigil metrics AGENT` and `vigil whoami`: what the fleet looks like and who
// the controller thinks we are. Stateless functions; thread-compatible.
#pragma once

#include <ostream>

#include "absl/time/time.h"
#include "cli/command_env.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::cli {

// Registers the verbs on `app`; their actions run against `env`.
void AddAgentsCommands(CLI::App& app, CommandEnv& env);

// Table: ID, HOST, ROLE, STATE, LAST SEEN, CPU, MEM, DISK, LOST.
void PrintAgentsTable(const v1::ListAgentsResponse& response, absl::Time now, std::ostream& out);
// Table: NAME, LABELS, VALUE, P50, P95, P99; then one table per diagnostic.
void PrintMetrics(const v1::GetMetricsResponse& response, absl::Time now, std::ostream& out);

}  // namespace vigil::cli
