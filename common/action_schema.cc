#include "common/action_schema.h"

#include <array>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/yaml_util.h"

namespace vigil {
namespace {

constexpr std::array kRestartService = {
    ParamSpec{"unit", ParamType::kString, true, "", "service unit, e.g. azalscore@2"}};
constexpr std::array<ParamSpec, 0> kNoParams = {};
constexpr std::array kSetNginxUpstream = {
    ParamSpec{"upstream", ParamType::kString, true, "", "upstream block name"},
    ParamSpec{"server", ParamType::kString, true, "", "server address host:port"},
    ParamSpec{"state", ParamType::kEnum, true, "add|remove|drain", "what to do with the server"}};
constexpr std::array kBackendPid = {
    ParamSpec{"pid", ParamType::kInteger, true, "", "backend process id"}};
constexpr std::array kLogrotate = {
    ParamSpec{"config", ParamType::kString, false, "", "logrotate config (default: the agent's)"}};
constexpr std::array kCleanOldLogs = {
    ParamSpec{"dir", ParamType::kString, true, "", "directory, inside the agent's allowed ones"},
    ParamSpec{"pattern", ParamType::kString, false, "", "file name glob (default *.log.*)"},
    ParamSpec{"older_than", ParamType::kDuration, true, "", "minimum age, e.g. 7d"},
    ParamSpec{"recursive", ParamType::kEnum, false, "yes|no",
              "also in subfolders on the same filesystem, like find -xdev (default no)"}};
constexpr std::array kRedisFlushdb = {
    ParamSpec{"db", ParamType::kInteger, true, "", "database number"}};
constexpr std::array kJournalVacuum = {
    ParamSpec{"older_than", ParamType::kDuration, true, "", "journal files older than, e.g. 7d"}};
constexpr std::array kPgVacuumAnalyze = {
    ParamSpec{"table", ParamType::kString, false, "", "[schema.]table (default: the whole database)"},
    ParamSpec{"all_databases", ParamType::kEnum, false, "yes|no",
              "every database that accepts connections, like vacuumdb --all (default no)"}};
constexpr std::array kPgReindex = {
    ParamSpec{"index", ParamType::kString, true, "", "[schema.]index to rebuild"}};
constexpr std::array kPgCreateIndex = {
    ParamSpec{"table", ParamType::kString, true, "", "[schema.]table"},
    ParamSpec{"columns", ParamType::kString, true, "", "column names, comma-separated"},
    ParamSpec{"name", ParamType::kString, true, "", "name of the new index"},
    ParamSpec{"method", ParamType::kEnum, false, "btree|hash|gin|gist|brin",
              "index access method (default btree)"}};
constexpr std::array kRedisConfigSet = {
    ParamSpec{"parameter", ParamType::kString, true, "", "a parameter the agent lists"},
    ParamSpec{"value", ParamType::kString, true, "", "a value the agent lists for it"}};
constexpr std::array kK8sScale = {
    ParamSpec{"namespace", ParamType::kString, true, "", "Kubernetes namespace"},
    ParamSpec{"deployment", ParamType::kString, true, "", "deployment name"},
    ParamSpec{"replicas", ParamType::kInteger, true, "", "replicas, within the agent's bounds"}};
constexpr std::array kK8sPatchHpa = {
    ParamSpec{"namespace", ParamType::kString, true, "", "Kubernetes namespace"},
    ParamSpec{"hpa", ParamType::kString, true, "", "HorizontalPodAutoscaler name"},
    ParamSpec{"min", ParamType::kInteger, true, "", "minReplicas, within the agent's bounds"},
    ParamSpec{"max", ParamType::kInteger, true, "", "maxReplicas, within the agent's bounds"}};

constexpr std::array kActions = {
    ActionSpec{"restart_service", kRestartService, 1,
               "restart a service through the service manager"},
    ActionSpec{"reload_nginx", kNoParams, 1, "nginx -t, then reload only if it passes"},
    ActionSpec{"set_nginx_upstream", kSetNginxUpstream, 1,
               "edit a managed upstream file, validate, reload; roll back on failure"},
    ActionSpec{"pg_terminate_backend", kBackendPid, 2, "terminate a PostgreSQL backend"},
    ActionSpec{"pg_cancel_backend", kBackendPid, 1, "cancel a PostgreSQL backend's query"},
    ActionSpec{"logrotate", kLogrotate, 1, "force a logrotate run"},
    ActionSpec{"clean_old_logs", kCleanOldLogs, 1, "delete old log files in an allowed directory"},
    ActionSpec{"redis_flushdb", kRedisFlushdb, 2, "empty one Redis database"},
    ActionSpec{"drop_caches", kNoParams, 1, "sync, then drop the page cache, dentries and inodes"},
    ActionSpec{"journal_vacuum", kJournalVacuum, 2, "delete archived journal files older than"},
    ActionSpec{"pg_vacuum_analyze", kPgVacuumAnalyze, 1,
               "VACUUM (ANALYZE) a table or the database"},
    // Two: both hold a lock on the table for their whole run (no DDL, no VACUUM meanwhile).
    ActionSpec{"pg_reindex_concurrently", kPgReindex, 2, "REINDEX INDEX CONCURRENTLY"},
    ActionSpec{"pg_create_index_concurrently", kPgCreateIndex, 2,
               "CREATE INDEX CONCURRENTLY on listed columns"},
    // Two: an eviction policy decides which keys Redis drops.
    ActionSpec{"redis_config_set", kRedisConfigSet, 2,
               "CONFIG SET of a listed parameter and value"},
    ActionSpec{"k8s_scale", kK8sScale, 1, "set a deployment's replicas (scale subresource)"},
    ActionSpec{"k8s_patch_hpa", kK8sPatchHpa, 1, "set an HPA's minReplicas and maxReplicas"},
    ActionSpec{"docker_prune", kNoParams, 2,
               "remove stopped containers, unused networks, images and build cache"},
};

absl::Status CheckType(absl::string_view action, const ParamSpec& spec, const std::string& value) {
  auto bad = [&](absl::string_view wanted) {
    return absl::InvalidArgumentError(absl::StrCat("action ", action, ": parameter '", spec.name,
                                                   "' = '", value, "' is not ", wanted));
  };
  switch (spec.type) {
    case ParamType::kString:
      if (value.empty()) {
        return bad("a non-empty string");
      }
      return absl::OkStatus();
    case ParamType::kInteger: {
      int64_t n = 0;
      if (!absl::SimpleAtoi(value, &n) || n < 0) {
        return bad("a non-negative integer");
      }
      return absl::OkStatus();
    }
    case ParamType::kDuration:
      if (!ParseDurationText(value).ok()) {
        return bad("a duration such as 30m or 7d");
      }
      return absl::OkStatus();
    case ParamType::kEnum:
      for (absl::string_view option : absl::StrSplit(spec.enum_values, '|')) {
        if (option == value) {
          return absl::OkStatus();
        }
      }
      return bad(absl::StrCat("one of ", spec.enum_values));
  }
  return absl::OkStatus();
}

}  // namespace

std::span<const ActionSpec> AllActions() { return kActions; }

const ActionSpec* FindAction(absl::string_view name) {
  for (const ActionSpec& a : kActions) {
    if (a.name == name) {
      return &a;
    }
  }
  return nullptr;
}

absl::Status CheckActionParams(absl::string_view action,
                               const std::map<std::string, std::string>& params) {
  const ActionSpec* spec = FindAction(action);
  if (spec == nullptr) {
    std::vector<absl::string_view> names;
    for (const ActionSpec& a : kActions) {
      names.push_back(a.name);
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unknown action '", action, "' (known: ", absl::StrJoin(names, ", "), ")"));
  }
  for (const auto& [name, value] : params) {
    const ParamSpec* p = nullptr;
    for (const ParamSpec& candidate : spec->params) {
      if (candidate.name == name) {
        p = &candidate;
      }
    }
    if (p == nullptr) {
      std::vector<absl::string_view> names;
      for (const ParamSpec& candidate : spec->params) {
        names.push_back(candidate.name);
      }
      return absl::InvalidArgumentError(
          absl::StrCat("action ", action, ": unknown parameter '", name,
                       "' (takes: ", names.empty() ? "none" : absl::StrJoin(names, ", "), ")"));
    }
    if (absl::Status s = CheckType(action, *p, value); !s.ok()) {
      return s;
    }
  }
  for (const ParamSpec& p : spec->params) {
    if (p.required && params.find(std::string(p.name)) == params.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("action ", action, ": missing parameter '", p.name, "' (", p.help, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace vigil
