// How a simulated agent paces its reconnects: the same policy as agent/stream_client.cc (a fully
// jittered wait in [0, backoff], backoff doubling from 100 ms to 1 s, back to the start after a
// Welcome) plus the controller's admission hint: a stream ended with RESOURCE_EXHAUSTED and
// trailing metadata `retry-after-ms` waits that long plus the jitter. Not thread-safe: one per
// agent, used under the agent's lock.
#pragma once

#include <cstdint>
#include <optional>
#include <random>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace vigil::loadgen {

// The longest hint honoured: a controller asking for more is waited for this long only.
inline constexpr absl::Duration kMaxRetryAfter = absl::Minutes(5);

// The value of a `retry-after-ms` trailer: a decimal count of milliseconds. nullopt when it is
// not one (empty, signs, spaces, other characters, or beyond kMaxRetryAfter's digits); values
// above kMaxRetryAfter are clamped to it.
std::optional<absl::Duration> ParseRetryAfterMs(absl::string_view text);

class ReconnectBackoff {
 public:
  ReconnectBackoff(absl::Duration initial, absl::Duration max) : initial_(initial), max_(max),
                                                                 backoff_(initial) {}

  // A stream was welcomed: the next failure starts from the initial backoff again.
  void Reset() { backoff_ = initial_; }

  // The wait before the next attempt after a failed one on a connected channel: `retry_after`
  // (zero without a hint) plus a uniform draw in [0, backoff]; then backoff doubles, up to max.
  absl::Duration Next(absl::Duration retry_after, std::mt19937_64& rng);

  absl::Duration current() const { return backoff_; }

 private:
  const absl::Duration initial_;
  const absl::Duration max_;
  absl::Duration backoff_;
};

}  // namespace vigil::loadgen
