// GetIncident by pages: the incident, up to a page of its timeline after a cursor and, with the
// first page, its alerts and actions, so that no call reads or holds an unbounded timeline.
// Stateless; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include "absl/status/statusor.h"
#include "storage/store.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::controller {

// Sequences are SQL integers: a cursor or resume point above this would wrap to a negative one.
constexpr uint64_t kMaxSeq = std::numeric_limits<int64_t>::max();
// Longer ids than this are not ids; refused before they reach a query.
constexpr size_t kMaxIncidentIdBytes = 256;

inline constexpr int kDefaultIncidentPageSize = 1000;  // events, when the request says 0
inline constexpr int kMaxIncidentPageSize = 10000;
// Timeline bytes per page: a page ends before the event that would pass this (never empty).
inline constexpr size_t kMaxIncidentPageBytes = 2u << 20;

// The page `request` asks for. INVALID_ARGUMENT naming the field for an empty or overlong
// incident_id, a page_size outside 0..kMaxIncidentPageSize, an after_seq beyond any sequence;
// NOT_FOUND naming the id; the store's error otherwise. next_after_seq is set only when more
// events follow (a cursor past the end gives an empty timeline, not an error).
absl::StatusOr<v1::GetIncidentResponse> LoadIncidentPage(storage::Store& store,
                                                         const v1::GetIncidentRequest& request);

}  // namespace vigil::controller
