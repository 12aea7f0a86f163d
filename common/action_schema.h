// The typed remediation actions, written once: names, parameters and their types, and the
// default number of approvals. The agent's actions and the controller's proposal checks both
// read it, so a proposal is refused for the same reasons the agent would refuse it.
// Immutable; thread-safe.
#pragma once

#include <map>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace vigil {

enum class ParamType { kString, kInteger, kDuration, kEnum };

struct ParamSpec {
  absl::string_view name;
  ParamType type;
  bool required;
  absl::string_view enum_values;  // kEnum: "add|remove|drain"
  absl::string_view help;
};

struct ActionSpec {
  absl::string_view name;
  std::span<const ParamSpec> params;
  int default_approvals;  // two for actions that kill sessions or drop data
  absl::string_view help;
};

std::span<const ActionSpec> AllActions();
// nullptr when `name` is not an action of the schema.
const ActionSpec* FindAction(absl::string_view name);

// Checks `params` against the schema of `action`: unknown action, unknown, missing or ill-typed
// parameter. The message names the action and the parameter.
absl::Status CheckActionParams(absl::string_view action,
                               const std::map<std::string, std::string>& params);

}  // namespace vigil
