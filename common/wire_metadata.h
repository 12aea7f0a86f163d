// gRPC metadata keys of the agent stream that both sides must spell the same way.
// Constants only; thread-safe.
#pragma once

#include "absl/strings/string_view.h"

namespace vigil {

// Trailing metadata on a stream the controller ended for a batch it refused: the batch's
// sequence. The agent drops that batch (and counts it) instead of resending it forever.
inline constexpr absl::string_view kRefusedSequenceKey = "vigil-refused-sequence";

}  // namespace vigil
