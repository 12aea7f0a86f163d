// clean_old_logs{dir, pattern, older_than}: deletes the regular files directly in `dir` (not in
// its subdirectories) whose names match the glob `pattern` (default *.log.*, i.e. rotated logs;
// names starting with a dot are never matched) and whose mtime is older than `older_than`.
// `dir` must be inside one of the allowed directories once symlinks and `..` are resolved (the
// check is repeated on the directory actually opened, and files are removed relative to it), and
// symlinks in it are never followed or removed.
//
//   actions:
//     clean_old_logs:
//       dirs:                  # required, non-empty; absolute
//         - /var/log/app
//         # a folder limited to its own patterns (the first is the default) and age: the
//         # runbook's find /var/backups/azalscore -name "*.sql.gz" -mtime +30 -delete
//         - {dir: /var/backups/azalscore, patterns: ["*.sql.gz"], min_age: 7d}
//       min_age: 1h            # optional, this default: a smaller older_than is refused
//
// The innermost listed directory holding `dir` sets the patterns and the minimum age.
// Reports how many files and bytes it removed. Used by the command executor's thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/actions/action.h"

namespace vigil::agent {

absl::StatusOr<std::unique_ptr<Action>> NewCleanOldLogsAction(const YAML::Node& options,
                                                              const ActionContext& context,
                                                              absl::string_view file);

}  // namespace vigil::agent
