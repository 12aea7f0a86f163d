// drop_caches: `sync`, then "3" written to the kernel's drop_caches file (page cache, dentries
// and inodes), the runbook's `sync; echo 3 > /proc/sys/vm/drop_caches`. The file is configurable
// so tests write to a stand-in, never to the host's /proc. The page cache before and after
// (Cached: of /proc/meminfo, when readable) goes to the output for the timeline.
//
//   actions:
//     drop_caches:
//       path: /proc/sys/vm/drop_caches   # optional, this default; absolute, must exist
//
// Used by the command executor's thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/actions/action.h"

namespace vigil::agent {

absl::StatusOr<std::unique_ptr<Action>> NewDropCachesAction(const YAML::Node& options,
                                                            const ActionContext& context,
                                                            absl::string_view file);

}  // namespace vigil::agent
