// gRPC metadata keys of the agent stream and of `Watch` that both sides must spell the same way.
// Constants only; thread-safe.
#pragma once

#include "absl/strings/string_view.h"

namespace vigil {

// Trailing metadata on a stream the controller ended for a batch it refused: the batch's
// sequence. The agent drops that batch (and counts it) instead of resending it forever.
inline constexpr absl::string_view kRefusedSequenceKey = "vigil-refused-sequence";

// Trailing metadata on a Watch stream the controller ended because the watcher fell behind
// (RESOURCE_EXHAUSTED): the seq of the last event actually sent. A new Watch with
// after_seq = this value carries on with no gap.
inline constexpr absl::string_view kResumeAfterSeqKey = "vigil-resume-after-seq";

// Request metadata on Watch, value "1": only events appended from now on (after_seq is then
// ignored), rather than every event after after_seq (0: from the first event).
inline constexpr absl::string_view kWatchLiveOnlyKey = "vigil-watch-live-only";

// Initial metadata on every Watch stream: the seq the stream starts after (the request's
// after_seq, or the head of the timeline for a live-only watch). A client that printed nothing
// yet resumes from here.
inline constexpr absl::string_view kWatchStartSeqKey = "vigil-watch-start-seq";

// Trailing metadata on a stream the controller refused because it admits new streams no faster
// than it can serve them (RESOURCE_EXHAUSTED): milliseconds to wait before trying again, as a
// decimal integer. Agents wait that long plus jitter, so a reconnect storm spreads itself out.
inline constexpr absl::string_view kRetryAfterMsKey = "retry-after-ms";

}  // namespace vigil
