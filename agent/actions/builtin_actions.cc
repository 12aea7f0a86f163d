// The built-in actions (one line each) and the building of the ones an agent config enables: its
// `actions:` map names each action with its options, and an action that is not listed there is
// never available to the controller. Unknown names and bad options are refused with file, line
// and key, before the agent starts.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/actions/action.h"
#include "agent/actions/clean_old_logs.h"
#include "agent/actions/docker_prune.h"
#include "agent/actions/drop_caches.h"
#include "agent/actions/journal_vacuum.h"
#include "agent/actions/k8s.h"
#include "agent/actions/logrotate.h"
#include "agent/actions/pg_backend.h"
#include "agent/actions/pg_maintenance.h"
#include "agent/actions/redis_config_set.h"
#include "agent/actions/redis_flushdb.h"
#include "agent/actions/reload_nginx.h"
#include "agent/actions/restart_service.h"
#include "agent/actions/set_nginx_upstream.h"
#include "common/action_schema.h"
#include "common/status.h"
#include "common/yaml_util.h"

namespace vigil::agent {

void RegisterBuiltinActions(ActionRegistry& registry) {
  registry.Register("restart_service", NewRestartServiceAction);
  registry.Register("reload_nginx", NewReloadNginxAction);
  registry.Register("set_nginx_upstream", NewSetNginxUpstreamAction);
  registry.Register("pg_terminate_backend", NewPgTerminateBackendAction);
  registry.Register("pg_cancel_backend", NewPgCancelBackendAction);
  registry.Register("logrotate", NewLogrotateAction);
  registry.Register("clean_old_logs", NewCleanOldLogsAction);
  registry.Register("redis_flushdb", NewRedisFlushdbAction);
  registry.Register("drop_caches", NewDropCachesAction);
  registry.Register("journal_vacuum", NewJournalVacuumAction);
  registry.Register("pg_vacuum_analyze", NewPgVacuumAnalyzeAction);
  registry.Register("pg_reindex_concurrently", NewPgReindexConcurrentlyAction);
  registry.Register("pg_create_index_concurrently", NewPgCreateIndexConcurrentlyAction);
  registry.Register("redis_config_set", NewRedisConfigSetAction);
  registry.Register("k8s_scale", NewK8sScaleAction);
  registry.Register("k8s_patch_hpa", NewK8sPatchHpaAction);
  registry.Register("docker_prune", NewDockerPruneAction);
}

namespace {

absl::StatusOr<std::vector<std::unique_ptr<Action>>> Build(const YAML::Node& actions,
                                                           const ActionRegistry& registry,
                                                           const ActionContext& context,
                                                           absl::string_view file) {
  std::vector<std::unique_ptr<Action>> built;
  if (!actions.IsDefined() || actions.IsNull()) {
    return built;
  }
  if (!actions.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, actions), ": key 'actions' must be a map"));
  }
  for (const auto& kv : actions) {
    ASSIGN_OR_RETURN(const std::string name, YamlKey(kv.first, file, "actions"));
    const ActionFactory* factory = registry.Find(name);
    if (factory == nullptr) {
      std::vector<absl::string_view> known;
      for (const ActionSpec& spec : AllActions()) {
        if (registry.Find(spec.name) != nullptr) {
          known.push_back(spec.name);
        }
      }
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, kv.first), ": unknown action '", name,
                       "' in actions (known: ", absl::StrJoin(known, ", "), ")"));
    }
    for (const auto& other : built) {
      if (other->name() == name) {
        return absl::InvalidArgumentError(
            absl::StrCat(YamlWhere(file, kv.first), ": action '", name, "' is listed twice"));
      }
    }
    if (!kv.second.IsNull() && !kv.second.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, kv.second), ": actions.", name,
                                                     " must be a map of options"));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<Action> action, (*factory)(kv.second, context, file));
    built.push_back(std::move(action));
  }
  return built;
}

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<Action>>> BuildActions(const YAML::Node& actions,
                                                                  const ActionRegistry& registry,
                                                                  const ActionContext& context,
                                                                  absl::string_view file) {
  try {
    return Build(actions, registry, context, file);
  } catch (...) {
    return YamlExceptionStatus(file);
  }
}

}  // namespace vigil::agent
