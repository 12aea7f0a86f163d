// logrotate{config}: a forced logrotate run (`logrotate -f [-s STATE] CONFIG`) over one of the
// logrotate configs the agent allows; without the parameter, the first of them.
//
//   actions:
//     logrotate:
//       configs: [/etc/logrotate.conf]   # optional, this default; absolute paths
//       state: /var/lib/logrotate/status # optional: logrotate's state file (-s)
//       logrotate: /usr/sbin/logrotate   # optional, this default
//
// Used by the command executor's thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/actions/action.h"

namespace vigil::agent {

absl::StatusOr<std::unique_ptr<Action>> NewLogrotateAction(const YAML::Node& options,
                                                           const ActionContext& context,
                                                           absl::string_view file);

}  // namespace vigil::agent
