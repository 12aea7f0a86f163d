// Lower-case names of the model's enums, as people read them in tables, filters and reports
// ("open", "firing", "SEV2", "connected"). Unknown values read "-". Stateless; thread-safe.
#pragma once

#include <string>

#include "vigil/v1/control_service.pb.h"
#include "vigil/v1/incident.pb.h"

namespace vigil {

std::string SeverityName(v1::Severity severity);
std::string IncidentStateName(v1::IncidentState state);
std::string AlertStateName(v1::AlertState state);
std::string ProposalStateName(v1::ProposalState state);
std::string AgentStateName(v1::AgentState state);

}  // namespace vigil
