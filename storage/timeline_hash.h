// The audit chain's hash: SHA-256 over the previous hash and a canonical, length-prefixed
// encoding of an event's content (never protobuf bytes, which are not canonical).
// Stateless; thread-safe.
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::storage {

// prev_hash of the first event.
inline constexpr absl::string_view kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// Lowercase hex SHA-256 of (prev_hash, seq, incident_id, time, kind, actor, summary, details).
std::string TimelineEventHash(const v1::TimelineEvent& event);

}  // namespace vigil::storage
