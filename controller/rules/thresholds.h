// The thresholds an agent watches between its collection rounds (sensing), derived from the
// alert rules: a per-agent rule on a gauge becomes (metric, matchers, comparison, threshold),
// one more per severity tier. Fleet-wide rules, histogram quantiles and rate()/irate() are
// judged on the controller only, at the rounds' pace. Pure functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "controller/rules/rule.h"
#include "vigil/v1/agent_service.pb.h"

namespace vigil::controller {

// At most this many thresholds go to an agent; the rest are left to the rounds.
inline constexpr size_t kMaxWatchThresholds = 256;

struct WatchDerivation {
  v1::WatchThresholds message;         // what each agent is sent
  std::vector<std::string> watched;    // names of the rules the agents watch
  std::vector<std::string> unwatched;  // "NAME: why", rules left to the collection rounds
};

// Why `rule` cannot be watched between rounds, or "" when it can.
std::string WhyNotWatched(const Rule& rule);

// The thresholds for `rules`, identical ones sent once, in rule order.
WatchDerivation DeriveWatchThresholds(const std::vector<Rule>& rules);

}  // namespace vigil::controller
