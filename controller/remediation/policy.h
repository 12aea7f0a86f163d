// The approval policy: per action, how many people must approve and which roles may, plus how
// long proposals and signed commands live and how wide a rollout wave is.
//
//   proposal_ttl: 15m        # a proposal nobody approved in time expires
//   command_ttl: 60s         # agents refuse a signed command after this
//   wave_size: 100           # default agents per wave; a wave starts when the last one succeeded
//   default: {approvals: 1, roles: [commander, admin], timeout: 60s}
//   actions:
//     pg_terminate_backend: {approvals: 2}
//     restart_service: {approvals: 1, roles: [commander, admin], timeout: 120s}
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

struct ActionPolicy {
  int approvals = 1;
  std::set<Role> roles = {Role::kCommander, Role::kAdmin};
  absl::Duration timeout = absl::Seconds(60);  // how long the agent may run it
};

struct Policy {
  absl::Duration proposal_ttl = absl::Minutes(15);
  absl::Duration command_ttl = absl::Seconds(60);
  int wave_size = 100;
  ActionPolicy fallback;
  std::map<std::string, ActionPolicy> actions;

  // The policy of `action` (the schema's default approvals when the file is silent).
  ActionPolicy For(const std::string& action) const;
};

// Errors name file, line and key. An empty path yields the defaults.
absl::StatusOr<Policy> LoadPolicy(const std::string& path);
// Parses policy text; `name` stands for the file in messages.
absl::StatusOr<Policy> ParsePolicy(absl::string_view text, absl::string_view name);

}  // namespace vigil::controller
