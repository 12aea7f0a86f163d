// The audit chain's hash: SHA-256 over the previous hash and a canonical, length-prefixed
// encoding of an event's content (never protobuf bytes, which are not canonical).
// TimelineEventHash is stateless and thread-safe; a TimelineHasher belongs to one thread.
#pragma once

#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::storage {

// prev_hash of the first event.
inline constexpr absl::string_view kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// Lowercase hex SHA-256 of (prev_hash, seq, incident_id, time, kind, actor, summary, details).
std::string TimelineEventHash(const v1::TimelineEvent& event);

// The same hash for many events in a row (a batch, a chain being verified): keeps its digest
// context and encoding buffer between events instead of setting them up for each one.
class TimelineHasher {
 public:
  TimelineHasher();
  ~TimelineHasher();
  TimelineHasher(const TimelineHasher&) = delete;
  TimelineHasher& operator=(const TimelineHasher&) = delete;

  std::string Hash(const v1::TimelineEvent& event);

 private:
  struct Context;
  std::unique_ptr<Context> context_;
  std::string canonical_;
};

}  // namespace vigil::storage
