#include "bench/loadgen/reconnect_backoff.h"

#include <algorithm>

namespace vigil::loadgen {

std::optional<absl::Duration> ParseRetryAfterMs(absl::string_view text) {
  // Digits only, and few enough that the sum below cannot overflow.
  if (text.empty() || text.size() > 12) {
    return std::nullopt;
  }
  int64_t ms = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    ms = ms * 10 + (c - '0');
  }
  return std::min(absl::Milliseconds(ms), kMaxRetryAfter);
}

absl::Duration ReconnectBackoff::Next(absl::Duration retry_after, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> jitter(0.0, 1.0);
  const absl::Duration wait = std::max(retry_after, absl::ZeroDuration()) + backoff_ * jitter(rng);
  backoff_ = std::min(backoff_ * 2, max_);
  return wait;
}

}  // namespace vigil::loadgen
