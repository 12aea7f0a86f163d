// An incident as one document, for auditors and post-mortems who have nothing else: summary,
// hosts, probable cause, alerts, response times, the diagnostics tables as collected, every
// remediation action with its reviews and per-agent outcome, the post-incident checklist, every
// timeline event with its hash, and the audit chain's verification and signed checkpoint.
// Stateless; thread-safe.
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

// The incident `incident_id` as a document. `audit` is the caller's verification of the chain
// (its head, its latest signed checkpoint); the export renders it and says whether the
// checkpoint covers the incident's last event, and never verifies anything itself.
// InvalidArgument for another format, NotFound for an unknown incident, or the store's error.
//
// format "markdown": for people. Every text that came from an agent, a person or the database is
// escaped: table cells cannot end their cell, row or table, and neither cells nor code blocks
// (an agent's output) carry live markdown, HTML or control characters.
//
// format "json": one object. Embedded messages use protobuf's JSON mapping with the proto field
// names (snake_case) and every field printed, defaults included (64-bit integers are strings
// there, as the mapping says); the export's own fields are plain JSON numbers. Times are Unix
// milliseconds; an absent value is null:
//   {
//     "export_version": 2,
//     "incident_id": "INC-0001",
//     "report": GetIncidentResponse,        // incident (with checklist), timeline, alerts, actions
//     "response_times": {"opened_unix_ms": N,
//                        "time_to_acknowledge_ms": N|null, "time_to_mitigate_ms": N|null,
//                        "time_to_resolve_ms": N|null},   // each from opened; null: not (yet)
//     "diagnostics": [{"seq": N, "time_unix_ms": N, "agent_id": "...", "summary": "...",
//                      "diagnostics": Diagnostics|null}],  // null: a note, e.g. agent unreachable
//     "actions": [{"id": "...",             // report.actions[i] (same order), which has the
//                                           // parameters, proposer, agents and state
//                  "reviews": [{"decision": "approved"|"rejected", "by": "...",
//                               "time_unix_ms": N|null, "seq": N|null}],
//                  "outcomes": [{"agent_id": "...", "wave": N, "state": "...", "outcome": "...",
//                                "exit_code": N|null, "duration_ms": N, "sent_unix_ms": N|null,
//                                "result_unix_ms": N|null, "reason": "...",
//                                "output_tail": "...", "output_tail_truncated": bool}]}],
//     "checklist": [ChecklistItem],
//     "audit": VerifyAuditResponse,         // as the caller passed it
//     "coverage": {"last_event_seq": N, "checkpoint_seq": N|null, "covered": bool}
//   }                                       // covered: checkpoint_seq >= last_event_seq (the
//                                           // checkpoint itself is verified only if audit.ok)
// "output_tail" is the last 20 lines and at most 4 KiB of the agent's output (the whole stored
// tail is in report.actions[].runs[].output_tail).
absl::StatusOr<std::string> ExportIncident(storage::Store& store, absl::string_view incident_id,
                                           absl::string_view format,
                                           const v1::VerifyAuditResponse& audit);

}  // namespace vigil::controller
