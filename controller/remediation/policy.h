// The approval policy: per action, how many people must approve and which roles may, plus how
// long proposals and signed commands live and how wide a rollout wave is.
//
//   proposal_ttl: 15m        # a proposal nobody approved in time expires
//   command_ttl: 60s         # agents refuse a signed command after this
//   wave_size: 100           # default agents per wave; a wave starts when the last one succeeded
//   default: {approvals: 1, roles: [commander, admin], timeout: 60s}
//   actions:
//     pg_terminate_backend: {approvals: 2}
//     restart_service: {approvals: 1, roles: [commander, admin], timeout: 120s,
//                       breaker: {per_host: 3, per_fleet: 50, window: 1h, cooldown: 15m}}
//
// A circuit breaker bounds how often an action runs: at most `per_host` runs on one agent and
// `per_fleet` on all agents within the sliding `window` (0: no bound); once a bound is reached it
// stays shut at least `cooldown` after the last run. Every action has a conservative built-in
// breaker (restart_service 3 per host per hour); `default.breaker` sets one for actions that
// have none built in, and an action's own `breaker:` keys override its built-in ones.
//
// Actions the file does not name take `default`, except that the schema's dangerous actions
// (pg_terminate_backend, redis_flushdb) keep their two approvals unless the file says otherwise.
// Immutable once loaded; thread-safe.
#pragma once

#include <map>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "controller/auth/auth.h"

namespace vigil::controller {

struct BreakerLimits {
  int per_host = 10;   // runs on one agent within `window`; 0: no bound
  int per_fleet = 0;   // runs on all agents within `window`; 0: no bound
  absl::Duration window = absl::Hours(1);
  absl::Duration cooldown = absl::ZeroDuration();
};

// The built-in breaker of `action` (the fallback's when it has none).
BreakerLimits DefaultBreaker(absl::string_view action, const BreakerLimits& fallback);

struct ActionPolicy {
  int approvals = 1;
  std::set<Role> roles = {Role::kCommander, Role::kAdmin};
  absl::Duration timeout = absl::Seconds(60);  // how long the agent may run it
  BreakerLimits breaker;
};

struct Policy {
  absl::Duration proposal_ttl = absl::Minutes(15);
  absl::Duration command_ttl = absl::Seconds(60);
  int wave_size = 100;
  ActionPolicy fallback;
  std::map<std::string, ActionPolicy> actions;

  // The policy of `action` (the schema's default approvals and the built-in breaker when the
  // file is silent).
  ActionPolicy For(const std::string& action) const;
};

// Errors name file, line and key. An empty path yields the defaults.
absl::StatusOr<Policy> LoadPolicy(const std::string& path);
// Parses policy text; `name` stands for the file in messages. Pure and exception-free.
absl::StatusOr<Policy> ParsePolicy(absl::string_view text, absl::string_view name);

}  // namespace vigil::controller
