// redis_config_set{parameter, value}: CONFIG SET on the Redis the agent watches
// (collectors.redis.address), for the parameters the config lists and only to the values it lists
// for each (the runbook's `redis-cli config set maxmemory-policy allkeys-lru`). The value before
// and after (CONFIG GET) goes to the timeline.
//
//   actions:
//     redis_config_set:
//       parameters:                                  # required, non-empty
//         maxmemory-policy: [allkeys-lru, volatile-lru]
//
// A config that enables it without collectors.redis is refused. Connect and commands are bounded
// by the action's timeout. Used by the command executor's thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/actions/action.h"

namespace vigil::agent {

absl::StatusOr<std::unique_ptr<Action>> NewRedisConfigSetAction(const YAML::Node& options,
                                                                const ActionContext& context,
                                                                absl::string_view file);

}  // namespace vigil::agent
