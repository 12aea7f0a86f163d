// An incident as one document, for auditors and post-mortems: summary, hosts, probable cause,
// alerts, every timeline event with its hash, the checklist and remediation actions, and
// whether the audit chain verifies. Stateless; thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/store.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::controller {

// Everything the store holds about one incident; NotFound names the id.
absl::StatusOr<v1::GetIncidentResponse> LoadIncident(storage::Store& store,
                                                     absl::string_view incident_id);

// format: "markdown" or "json" (the GetIncidentResponse plus the chain check, proto field names).
absl::StatusOr<std::string> ExportIncident(storage::Store& store, absl::string_view incident_id,
                                           absl::string_view format);

}  // namespace vigil::controller
