// The audit chain's hashes. Every timeline event stores the hash of the one before it (prev_hash)
// and its own, over a canonical, length-prefixed encoding of its content (never protobuf bytes,
// which are not canonical). Two formats (DESIGN.md, "Chain format 2"):
//   1: SHA-256("vigil.timeline.v1", prev_hash, seq, incident_id, time, kind, actor, summary,
//      details_json): every event's content is needed to check any later one.
//   2: SHA-256("vigil.timeline.v2", prev_hash, seq, content_hash), content_hash =
//      SHA-256("vigil.content.v2", incident_id, time, kind, actor, summary, details_json):
//      one incident's events are proven with the other events' content hashes only.
// Strings are 8-byte big-endian lengths then bytes; numbers 8 bytes big-endian; hashes are
// lowercase hex (as strings, length-prefixed too). README.md, "Audit bundles", says the same for
// anyone writing their own verifier.
// TimelineHasher belongs to one thread; the free functions are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::audit {

// prev_hash of the first event.
inline constexpr absl::string_view kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// Appends `v` as 8 bytes, most significant first: how the chain and checkpoints encode integers.
void AppendU64(std::string& out, uint64_t v);

// Keeps its digest context and encoding buffer between events (a batch being appended, a chain
// being verified) instead of setting them up for each one.
class TimelineHasher {
 public:
  TimelineHasher();
  ~TimelineHasher();
  TimelineHasher(const TimelineHasher&) = delete;
  TimelineHasher& operator=(const TimelineHasher&) = delete;

  // The event's hash in its chain_format (0 counts as 1), from its prev_hash, seq and content.
  std::string Hash(const v1::TimelineEvent& event);
  // Format 2's content hash of the event.
  std::string ContentHash(const v1::TimelineEvent& event);
  // Format 2's link: the hash of event `seq` whose content hash is `content_hash`.
  std::string Link(absl::string_view prev_hash, uint64_t seq, absl::string_view content_hash);

 private:
  std::string Digest();
  struct Context;
  std::unique_ptr<Context> context_;
  std::string canonical_;
};

// One-off forms of the above.
std::string TimelineEventHash(const v1::TimelineEvent& event);
std::string TimelineContentHash(const v1::TimelineEvent& event);

// True for 64 lowercase hex digits.
bool IsHexHash(absl::string_view s);

}  // namespace vigil::audit
