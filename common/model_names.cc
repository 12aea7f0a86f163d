#include "common/model_names.h"

namespace vigil {

std::string SeverityName(v1::Severity severity) {
  switch (severity) {
    case v1::SEV1:
      return "SEV1";
    case v1::SEV2:
      return "SEV2";
    case v1::SEV3:
      return "SEV3";
    case v1::SEV4:
      return "SEV4";
    default:
      return "-";
  }
}

std::string IncidentStateName(v1::IncidentState state) {
  switch (state) {
    case v1::OPEN:
      return "open";
    case v1::ACKNOWLEDGED:
      return "acknowledged";
    case v1::MITIGATED:
      return "mitigated";
    case v1::INCIDENT_RESOLVED:
      return "resolved";
    default:
      return "-";
  }
}

std::string AlertStateName(v1::AlertState state) {
  switch (state) {
    case v1::PENDING:
      return "pending";
    case v1::FIRING:
      return "firing";
    case v1::RESOLVED:
      return "resolved";
    case v1::STALE:
      return "stale";
    default:
      return "-";
  }
}

std::string ProposalStateName(v1::ProposalState state) {
  switch (state) {
    case v1::PROPOSED:
      return "proposed";
    case v1::APPROVED:
      return "approved";
    case v1::REJECTED:
      return "rejected";
    case v1::EXPIRED:
      return "expired";
    case v1::DISPATCHING:
      return "dispatching";
    case v1::SUCCEEDED:
      return "succeeded";
    case v1::FAILED:
      return "failed";
    case v1::OUTCOME_UNKNOWN:
      return "outcome-unknown";
    default:
      return "-";
  }
}

std::string AgentStateName(v1::AgentState state) {
  switch (state) {
    case v1::CONNECTED:
      return "connected";
    case v1::DISCONNECTED:
      return "disconnected";
    default:
      return "unknown";
  }
}

}  // namespace vigil
