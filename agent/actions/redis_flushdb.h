// redis_flushdb{db}: empties one Redis database (SELECT db, then FLUSHDB) on the Redis the agent
// watches (collectors.redis.address); only databases the config lists may be flushed.
//
//   actions:
//     redis_flushdb:
//       databases: [0]   # required, non-empty: database numbers
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

absl::StatusOr<std::unique_ptr<Action>> NewRedisFlushdbAction(const YAML::Node& options,
                                                              const ActionContext& context,
                                                              absl::string_view file);

}  // namespace vigil::agent
