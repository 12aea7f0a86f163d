#include "controller/remediation/policy.h"

#include "absl/strings/str_cat.h"
#include "common/action_schema.h"
#include "common/yaml_util.h"

namespace vigil::controller {
namespace {

absl::Status ParseActionPolicy(const YAML::Node& node, const std::string& file,
                               const std::string& context, ActionPolicy* out) {
  if (absl::Status s = YamlCheckKeys(node, file, context, {"approvals", "roles", "timeout"});
      !s.ok()) {
    return s;
  }
  if (node["approvals"].IsDefined()) {
    auto approvals = YamlDouble(node, "approvals", file, 1);
    if (!approvals.ok()) {
      return approvals.status();
    }
    if (*approvals < 1 || *approvals > 10 || *approvals != static_cast<int>(*approvals)) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, node["approvals"]), ": ",
                                                     context, ": approvals must be 1 to 10"));
    }
    out->approvals = static_cast<int>(*approvals);
  }
  if (node["roles"].IsDefined()) {
    auto roles = YamlStringList(node, "roles", file);
    if (!roles.ok()) {
      return roles.status();
    }
    out->roles.clear();
    for (const std::string& r : *roles) {
      auto role = ParseRole(r);
      if (!role.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, node["roles"]), ": ",
                                                       context, ": ", role.status().message()));
      }
      if (*role == Role::kViewer) {
        return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, node["roles"]), ": ",
                                                       context, ": viewers cannot approve"));
      }
      out->roles.insert(*role);
    }
    if (out->roles.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, node["roles"]), ": ", context,
                                                     ": roles must name at least one role"));
    }
  }
  auto timeout = YamlDuration(node, "timeout", file, out->timeout);
  if (!timeout.ok()) {
    return timeout.status();
  }
  out->timeout = *timeout;
  return absl::OkStatus();
}

}  // namespace

ActionPolicy Policy::For(const std::string& action) const {
  if (auto it = actions.find(action); it != actions.end()) {
    return it->second;
  }
  ActionPolicy policy = fallback;
  if (const ActionSpec* spec = FindAction(action); spec != nullptr) {
    policy.approvals = std::max(policy.approvals, spec->default_approvals);
  }
  return policy;
}

namespace {

// The policy in `root`, a parsed file; `path` names it in messages.
absl::StatusOr<Policy> PolicyFromYaml(const absl::StatusOr<YAML::Node>& root,
                                      const std::string& path) {
  Policy policy;
  if (!root.ok()) {
    return root.status();
  }
  if (absl::Status s =
          YamlCheckKeys(*root, path, "the policy",
                        {"proposal_ttl", "command_ttl", "wave_size", "default", "actions"});
      !s.ok()) {
    return s;
  }
  auto proposal_ttl = YamlDuration(*root, "proposal_ttl", path, policy.proposal_ttl);
  auto command_ttl = YamlDuration(*root, "command_ttl", path, policy.command_ttl);
  auto wave_size = YamlDouble(*root, "wave_size", path, policy.wave_size);
  for (const absl::Status& s : {proposal_ttl.status(), command_ttl.status(), wave_size.status()}) {
    if (!s.ok()) {
      return s;
    }
  }
  policy.proposal_ttl = *proposal_ttl;
  policy.command_ttl = *command_ttl;
  // Checked before the conversion to int: 1e300 or .nan must not reach it.
  if (!(*wave_size >= 1 && *wave_size <= 1'000'000)) {
    return absl::InvalidArgumentError(absl::StrCat(YamlWhere(path, (*root)["wave_size"]),
                                                   ": wave_size must be at least 1 (and at most "
                                                   "1000000)"));
  }
  policy.wave_size = static_cast<int>(*wave_size);
  if ((*root)["default"].IsDefined()) {
    if (absl::Status s = ParseActionPolicy((*root)["default"], path, "default", &policy.fallback);
        !s.ok()) {
      return s;
    }
  }
  const YAML::Node actions = (*root)["actions"];
  if (actions.IsDefined() && !actions.IsNull()) {
    if (!actions.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(
          YamlWhere(path, actions), ": actions must be a map of action name to policy"));
    }
    for (const auto& kv : actions) {
      const std::string name = kv.first.as<std::string>();
      if (FindAction(name) == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(YamlWhere(path, kv.first), ": unknown action '", name, "'"));
      }
      ActionPolicy action_policy = policy.For(name);
      if (absl::Status s =
              ParseActionPolicy(kv.second, path, absl::StrCat("actions.", name), &action_policy);
          !s.ok()) {
        return s;
      }
      policy.actions[name] = action_policy;
    }
  }
  return policy;
}

}  // namespace

absl::StatusOr<Policy> ParsePolicy(absl::string_view text, absl::string_view name) {
  return PolicyFromYaml(LoadYamlString(text, name), std::string(name));
}

absl::StatusOr<Policy> LoadPolicy(const std::string& path) {
  if (path.empty()) {
    return Policy();
  }
  return PolicyFromYaml(LoadYamlFile(path), path);
}

}  // namespace vigil::controller
