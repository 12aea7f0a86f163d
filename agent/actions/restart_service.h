// restart_service{unit}: restarts one service through the host's service manager, never through
// a shell. The unit must match one of the agent's allowed globs.
//
//   actions:
//     restart_service:
//       units: ["azalscore", "azalscore@*"]   # fnmatch globs; required, non-empty
//   service_manager: systemd                  # the default: systemctl restart UNIT
//   # or a command template for supervisor, runit, s6...: split on whitespace into argv (or given
//   # as a list), "{unit}" replaced inside the arguments; it must contain {unit}.
//   service_manager: {restart: "supervisorctl -c /etc/supervisor.conf restart {unit}"}
//
// Unit names are limited to letters, digits and "@._:-" and may not start with "-", so a unit can
// never become an option of the service manager. Used by the command executor's thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/actions/action.h"

namespace vigil::agent {

// The restart command template from the config's service_manager (null or missing = systemd).
absl::StatusOr<std::vector<std::string>> ParseServiceManager(const YAML::Node& service_manager,
                                                             absl::string_view file);
// `restart_template` with every "{unit}" replaced by `unit`.
std::vector<std::string> RestartArgv(const std::vector<std::string>& restart_template,
                                     absl::string_view unit);

absl::StatusOr<std::unique_ptr<Action>> NewRestartServiceAction(const YAML::Node& options,
                                                                const ActionContext& context,
                                                                absl::string_view file);

}  // namespace vigil::agent
