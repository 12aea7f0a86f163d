// docker_prune: the runbook's `docker system prune -af` on the Docker Engine API over its unix
// socket, one request per kind, in the order the docker CLI uses:
//
//   POST /containers/prune                                  stopped containers
//   POST /networks/prune                                    unused networks
//   POST /images/prune?filters={"dangling":["false"]}       every unused image (-a)
//   POST /build/prune?all=true                              the whole build cache (-a)
//
// Refused (FailedPrecondition, at Check and Run) when the socket is absent: a host without
// Docker has nothing to prune. What each request removed and the space reclaimed go to the
// timeline; the first failing request stops the action.
//
//   actions:
//     docker_prune:
//       socket: /var/run/docker.sock   # optional, this default
//
// Used by the command executor's thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/actions/action.h"
#include "agent/actions/api_answers.h"

namespace vigil::agent {

absl::StatusOr<std::unique_ptr<Action>> NewDockerPruneAction(const YAML::Node& options,
                                                             const ActionContext& context,
                                                             absl::string_view file);

}  // namespace vigil::agent
