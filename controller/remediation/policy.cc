#include "controller/remediation/policy.h"

#include "absl/strings/str_cat.h"
#include "common/action_schema.h"
#include "common/yaml_util.h"

namespace vigil::controller {
namespace {

struct BuiltinBreaker {
  absl::string_view action;
  BreakerLimits limits;
};

// Conservative: enough for a bad hour, not for a loop. Raise them in the policy for a planned
// fleet-wide rollout.
const BuiltinBreaker kBuiltinBreakers[] = {
    {"restart_service", {3, 50, absl::Hours(1), absl::Minutes(15)}},
    {"reload_nginx", {6, 100, absl::Hours(1), absl::ZeroDuration()}},
    {"set_nginx_upstream", {10, 100, absl::Hours(1), absl::ZeroDuration()}},
    {"pg_terminate_backend", {10, 50, absl::Hours(1), absl::ZeroDuration()}},
    {"pg_cancel_backend", {20, 100, absl::Hours(1), absl::ZeroDuration()}},
    {"logrotate", {4, 100, absl::Hours(1), absl::ZeroDuration()}},
    {"clean_old_logs", {4, 100, absl::Hours(1), absl::ZeroDuration()}},
    {"redis_flushdb", {1, 3, absl::Hours(24), absl::ZeroDuration()}},
    {"drop_caches", {2, 20, absl::Hours(1), absl::Minutes(10)}},
    {"journal_vacuum", {2, 100, absl::Hours(1), absl::ZeroDuration()}},
    {"pg_vacuum_analyze", {4, 20, absl::Hours(1), absl::ZeroDuration()}},
    {"pg_reindex_concurrently", {2, 10, absl::Hours(1), absl::ZeroDuration()}},
    {"pg_create_index_concurrently", {2, 5, absl::Hours(24), absl::ZeroDuration()}},
    {"redis_config_set", {4, 50, absl::Hours(1), absl::ZeroDuration()}},
    {"k8s_scale", {6, 20, absl::Hours(1), absl::Minutes(5)}},
    {"k8s_patch_hpa", {6, 20, absl::Hours(1), absl::Minutes(5)}},
    {"docker_prune", {1, 50, absl::Hours(1), absl::ZeroDuration()}},
};

absl::Status ParseBreaker(const YAML::Node& node, absl::string_view file,
                          const std::string& context, BreakerLimits* out) {
  const std::string where = absl::StrCat(context, ".breaker");
  if (absl::Status s =
          YamlCheckKeys(node, file, where, {"per_host", "per_fleet", "window", "cooldown"});
      !s.ok()) {
    return s;
  }
  for (absl::string_view key : {"per_host", "per_fleet"}) {
    int& field = key == "per_host" ? out->per_host : out->per_fleet;
    auto value = YamlInt(node, key, file, field, 0, 100000);  // 0: no bound
    if (!value.ok()) {
      return value.status();
    }
    field = static_cast<int>(*value);
  }
  auto window = YamlDuration(node, "window", file, out->window);
  if (!window.ok()) {
    return window.status();
  }
  if (*window < absl::Minutes(1) || *window > absl::Hours(24 * 7)) {
    return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, node["window"]), ": ", where,
                                                   ".window must be 1m to 7d"));
  }
  out->window = *window;
  auto cooldown = YamlDuration(node, "cooldown", file, out->cooldown);
  if (!cooldown.ok()) {
    return cooldown.status();
  }
  if (*cooldown < absl::ZeroDuration() || *cooldown > out->window) {
    return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, node["cooldown"]), ": ", where,
                                                   ".cooldown must be 0 to the window (",
                                                   absl::FormatDuration(out->window), ")"));
  }
  out->cooldown = *cooldown;
  return absl::OkStatus();
}

absl::Status ParseActionPolicy(const YAML::Node& node, const std::string& file,
                               const std::string& context, ActionPolicy* out) {
  if (absl::Status s =
          YamlCheckKeys(node, file, context, {"approvals", "roles", "timeout", "breaker"});
      !s.ok()) {
    return s;
  }
  if (node["breaker"].IsDefined()) {
    if (!node["breaker"].IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, node["breaker"]), ": ", context,
                       ".breaker must be a map {per_host, per_fleet, window, cooldown}"));
    }
    if (absl::Status s = ParseBreaker(node["breaker"], file, context, &out->breaker); !s.ok()) {
      return s;
    }
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

BreakerLimits DefaultBreaker(absl::string_view action, const BreakerLimits& fallback) {
  for (const BuiltinBreaker& b : kBuiltinBreakers) {
    if (b.action == action) {
      return b.limits;
    }
  }
  return fallback;
}

ActionPolicy Policy::For(const std::string& action) const {
  if (auto it = actions.find(action); it != actions.end()) {
    return it->second;
  }
  ActionPolicy policy = fallback;
  if (const ActionSpec* spec = FindAction(action); spec != nullptr) {
    policy.approvals = std::max(policy.approvals, spec->default_approvals);
  }
  policy.breaker = DefaultBreaker(action, fallback.breaker);
  return policy;
}

namespace {

absl::StatusOr<Policy> ParsePolicyOrThrow(absl::string_view text, const std::string& path) {
  Policy policy;
  absl::StatusOr<YAML::Node> root = LoadYamlString(text, path);
  if (!root.ok()) {
    return root.status();
  }
  if (root->IsNull()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the policy file is empty (no --policy gives the defaults)"));
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
  if (*wave_size < 1 || *wave_size > 100000) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(path, (*root)["wave_size"]), ": wave_size must be 1 to 100000"));
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
      absl::StatusOr<std::string> key = YamlKey(kv.first, path, "actions");
      if (!key.ok()) {
        return key.status();
      }
      const std::string& name = *key;
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
  const std::string file(name);
  try {
    return ParsePolicyOrThrow(text, file);
  } catch (...) {
    return YamlExceptionStatus(file);
  }
}

absl::StatusOr<Policy> LoadPolicy(const std::string& path) {
  if (path.empty()) {
    return Policy();
  }
  absl::StatusOr<std::string> text = ReadConfigFile(path);
  if (!text.ok()) {
    return text.status();
  }
  return ParsePolicy(*text, path);
}

}  // namespace vigil::controller
