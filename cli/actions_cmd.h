// `vigil action propose|approve|reject` and `vigil actions`: remediation proposals and their
// runs. Stateless functions; thread-compatible.
#pragma once

#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/command_env.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::cli {

// Registers the verbs on `app`; their actions run against `env`.
void AddActionsCommands(CLI::App& app, CommandEnv& env);

// Parses repeated "k=v" flags (the value may contain '='). InvalidArgument names the first
// item without '=' or with an empty key, or a key given twice.
absl::StatusOr<std::map<std::string, std::string>> ParseParams(
    const std::vector<std::string>& items);

// Table: ID, INCIDENT, ACTION, PARAMS, AGENTS, STATE, APPROVALS, PROPOSED BY, PROPOSED.
void PrintActionsTable(const google::protobuf::RepeatedPtrField<v1::ActionProposal>& actions,
                       absl::Time now, std::ostream& out, absl::string_view indent = "");
// One proposal in full: summary block, then its runs (AGENT, WAVE, STATE, EXIT, DURATION, ...).
void PrintActionDetail(const v1::ActionProposal& action, absl::Time now, std::ostream& out);

}  // namespace vigil::cli
