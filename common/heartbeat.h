// How often an agent stream must say something when it has nothing else to send: the rule the
// agent and the load generator's simulated agents share. Pure; thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>

#include "absl/time/time.h"

namespace vigil {

// The controller ends a stream silent for its Welcome's heartbeat_timeout_ms (2.5 s by
// default). An agent writes at least every 45 % of that: a delay of more than the same again
// on the way still keeps it connected. The share is just above what a 1 s collection interval
// needs (1.125 s > 1 s), so an agent streaming every second sends no heartbeat at all. At a
// third of the timeout (833 ms), it sent one before every batch and doubled the messages the
// controller handles.
inline constexpr double kHeartbeatShareOfTimeout = 0.45;

// `configured` caps the period (and is the period against a controller that states no timeout).
inline absl::Duration HeartbeatPeriod(absl::Duration configured, int64_t timeout_ms) {
  if (timeout_ms <= 0) {
    return configured;
  }
  return std::min(configured, absl::Milliseconds(timeout_ms) * kHeartbeatShareOfTimeout);
}

}  // namespace vigil
