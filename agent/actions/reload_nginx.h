// reload_nginx{}: validates the configuration with `nginx -t -c CONFIG` and reloads
// (`nginx -s reload -c CONFIG`) only when it passes, so a broken config never reaches the running
// nginx. Also the validate-and-reload used by set_nginx_upstream. Like any nginx reload it is
// asynchronous: it succeeds once the master is signalled, and new workers take over a moment later.
//
//   actions:
//     reload_nginx:
//       config: /etc/nginx/nginx.conf   # optional, this default; absolute
//       nginx: /usr/sbin/nginx          # optional, this default (a bare name is looked up in PATH)
//
// Used by the command executor's thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "agent/actions/action.h"
#include "agent/actions/action_util.h"

namespace vigil::agent {

struct NginxCommands {
  std::string nginx = "/usr/sbin/nginx";
  std::string config = "/etc/nginx/nginx.conf";

  std::vector<std::string> TestArgv() const { return {nginx, "-t", "-c", config}; }
  std::vector<std::string> ReloadArgv() const { return {nginx, "-s", "reload", "-c", config}; }
};

// Reads `nginx` and `config` from an action's options (keys already checked).
absl::StatusOr<NginxCommands> ReadNginxCommands(const ActionOptions& options);

absl::StatusOr<std::unique_ptr<Action>> NewReloadNginxAction(const YAML::Node& options,
                                                             const ActionContext& context,
                                                             absl::string_view file);

}  // namespace vigil::agent
