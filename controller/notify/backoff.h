// Retry pacing for a receiver that refuses or cannot be reached: exponential from `initial` to
// `max`, each delay shortened by a random part of up to `jitter` of it, so that many senders
// that failed together do not all come back in the same instant (Envoy's
// JitteredExponentialBackOffStrategy). Pure and thread-safe: the caller brings the random number.
#pragma once

#include <algorithm>
#include <cmath>

#include "absl/time/time.h"

namespace vigil::controller {

struct BackoffOptions {
  absl::Duration initial = absl::Seconds(1);
  absl::Duration max = absl::Minutes(5);
  double multiplier = 2.0;
  double jitter = 0.5;  // in [0, 1]: the share of each delay that is random
};

// The delay before attempt `failures` + 1, after `failures` (>= 1) failures in a row, with
// `unit_random` in [0, 1): initial * multiplier^(failures - 1), capped at max, then scaled into
// [(1 - jitter) * d, d].
inline absl::Duration BackoffDelay(const BackoffOptions& options, int failures,
                                   double unit_random) {
  const double exponent = std::max(0, failures - 1);
  double seconds = absl::ToDoubleSeconds(options.initial) * std::pow(options.multiplier, exponent);
  seconds = std::min(seconds, absl::ToDoubleSeconds(options.max));
  const double jitter = std::clamp(options.jitter, 0.0, 1.0);
  const double u = std::clamp(unit_random, 0.0, 1.0);
  return absl::Seconds(seconds * (1.0 - jitter * u));
}

}  // namespace vigil::controller
