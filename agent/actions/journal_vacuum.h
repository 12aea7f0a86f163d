// journal_vacuum{older_than}: `journalctl --vacuum-time=<older_than>`, which deletes the archived
// journal files whose newest entry is older than that (the active files are kept). older_than
// below min_age is refused. With `directory`, journalctl works on that directory only
// (`--directory`), e.g. a container's or a test's journal.
//
//   actions:
//     journal_vacuum:
//       min_age: 1d              # optional, this default: a smaller older_than is refused
//       directory: /var/log/journal/ID   # optional; default: the system's journals
//
// The output (the files deleted and the space freed) goes to the timeline. Used by the command
// executor's thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/actions/action.h"

namespace vigil::agent {

absl::StatusOr<std::unique_ptr<Action>> NewJournalVacuumAction(const YAML::Node& options,
                                                               const ActionContext& context,
                                                               absl::string_view file);

}  // namespace vigil::agent
