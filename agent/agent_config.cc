#include "agent/agent_config.h"

#include <filesystem>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/ids.h"
#include "common/status.h"
#include "common/yaml_util.h"

namespace vigil::agent {
namespace {

// True when restarts go through supervisorctl (`service_manager: {restart: "supervisorctl ..."}`):
// the units worth naming next to the top processes are then supervisor programs.
bool RestartsThroughSupervisor(const YAML::Node& service_manager) {
  if (!service_manager.IsDefined() || !service_manager.IsMap()) {
    return false;
  }
  const YAML::Node restart = service_manager["restart"];
  std::string program;
  if (restart.IsDefined() && restart.IsScalar()) {
    program = restart.Scalar().substr(0, restart.Scalar().find_first_of(" \t\n"));
  } else if (restart.IsDefined() && restart.IsSequence() && restart.size() > 0 &&
             restart[0].IsScalar()) {
    program = restart[0].Scalar();
  }
  return std::filesystem::path(program).filename() == "supervisorctl";
}

// Label values are strings on the wire; a YAML number or bool is accepted as its text.
absl::Status ReadLabels(const YAML::Node& node, absl::string_view file, Labels& out) {
  if (!node.IsDefined() || node.IsNull()) {
    return absl::OkStatus();
  }
  if (!node.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, node), ": key 'labels' must be a map of strings"));
  }
  for (const auto& kv : node) {
    ASSIGN_OR_RETURN(const std::string key, YamlKey(kv.first, file, "labels"));
    if (!kv.second.IsScalar()) {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, kv.second), ": label '", key, "' must be a string"));
    }
    if (key.empty() || key == "agent") {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, kv.first), ": label name '", key, "' is reserved or empty"));
    }
    out[key] = kv.second.Scalar();
  }
  return absl::OkStatus();
}

// `tls: {ca: FILE, cert: FILE, key: FILE}`. The files are read when the agent connects (and by
// --check-config), not here: parsing stays pure.
absl::Status ReadTls(const YAML::Node& node, absl::string_view file, AgentConfig& config) {
  if (!node.IsDefined() || node.IsNull()) {
    return absl::OkStatus();
  }
  if (!node.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, node), ": key 'tls' must be a map (ca, cert, key)"));
  }
  RETURN_IF_ERROR(YamlCheckKeys(node, file, "tls", {"ca", "cert", "key"}));
  for (const auto& [key, path, name] :
       {std::tuple<const char*, std::string*, std::string*>{"ca", &config.tls.ca,
                                                            &config.tls_names.ca},
        {"cert", &config.tls.cert, &config.tls_names.cert},
        {"key", &config.tls.key, &config.tls_names.key}}) {
    ASSIGN_OR_RETURN(*path, YamlString(node, key, file));
    if (!path->empty()) {
      *name = absl::StrCat(YamlWhere(file, node[key]), ": key 'tls.", key, "'");
    }
  }
  if (config.tls.cert.empty() != config.tls.key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        YamlWhere(file, node), ": keys 'tls.cert' and 'tls.key' go together: give both or neither"));
  }
  return absl::OkStatus();
}

absl::StatusOr<AgentConfig> Build(const YAML::Node& root, absl::string_view file,
                                  const CollectorRegistry& registry) {
  AgentConfig config;
  config.source = std::string(file);
  if (!root.IsMap()) {
    if (root.IsNull()) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": the config is empty"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, root), ": the config must be a map (id, labels, collectors)"));
  }
  RETURN_IF_ERROR(YamlCheckKeys(
      root, file, "the agent config",
      {"id", "labels", "controller", "interval", "collectors", "actions", "service_manager",
       "controller_public_key", "journal", "max_command_lifetime", "spool_dir",
       "spool_max_bytes", "result_journal", "result_journal_max_bytes", "audit_checkpoint",
       "tls"}));
  ASSIGN_OR_RETURN(config.id, YamlString(root, "id", file, false, Hostname()));
  if (config.id.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, root["id"]), ": key 'id' is empty"));
  }
  RETURN_IF_ERROR(ReadLabels(root["labels"], file, config.labels));
  ASSIGN_OR_RETURN(config.controller, YamlString(root, "controller", file));
  ASSIGN_OR_RETURN(config.interval, YamlDuration(root, "interval", file, config.interval));
  if (config.interval < absl::Milliseconds(100)) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, root["interval"]), ": key 'interval' must be at least 100ms"));
  }

  const YAML::Node collectors = root["collectors"];
  if (!collectors.IsDefined() || collectors.IsNull()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": key 'collectors' is missing (at least `host: {}`)"));
  }
  if (!collectors.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, collectors), ": key 'collectors' must be a map"));
  }
  for (const auto& kv : collectors) {
    ASSIGN_OR_RETURN(const std::string name, YamlKey(kv.first, file, "collectors"));
    const CollectorFactory* factory = registry.Find(name);
    if (factory == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, kv.first), ": unknown collector '", name,
                       "' in collectors (known: ", absl::StrJoin(registry.Names(), ", "), ")"));
    }
    if (!kv.second.IsNull() && !kv.second.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, kv.second), ": collectors.",
                                                     name, " must be a map of options"));
    }
    YAML::Node options = kv.second;
    if (name == "host" && RestartsThroughSupervisor(root["service_manager"]) &&
        (options.IsNull() || !options["unit_source"].IsDefined())) {
      // The host's own unit_source wins; otherwise name what restart_service can restart.
      if (options.IsNull()) {
        options = YAML::Node(YAML::NodeType::Map);
      }
      options["unit_source"] = "supervisor";
    }
    auto collector = (*factory)(options, file);
    if (!collector.ok()) {
      return collector.status();
    }
    config.collectors.push_back(std::move(*collector));
  }
  // Only defined nodes are assigned: assigning a missing (zombie) node throws in yaml-cpp.
  if (const YAML::Node actions = root["actions"]; actions.IsDefined() && !actions.IsNull()) {
    if (!actions.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, actions), ": key 'actions' must be a map"));
    }
    config.actions = actions;  // not a clone: clones lose the line numbers errors cite
  }
  if (const YAML::Node manager = root["service_manager"]; manager.IsDefined()) {
    config.service_manager = manager;
  }
  if (const YAML::Node pg = collectors["postgres"]; pg.IsDefined() && pg.IsMap()) {
    ASSIGN_OR_RETURN(config.postgres_dsn, YamlString(pg, "dsn", file));
  }
  if (const YAML::Node redis = collectors["redis"]; redis.IsDefined() && redis.IsMap()) {
    ASSIGN_OR_RETURN(config.redis_address, YamlString(redis, "address", file));
  }
  ASSIGN_OR_RETURN(std::string key_path, YamlString(root, "controller_public_key", file));
  if (!key_path.empty()) {
    absl::StatusOr<std::string> pem = ReadConfigFile(key_path);
    if (pem.ok() && pem->empty()) {
      pem = absl::InvalidArgumentError(absl::StrCat(key_path, ": the file is empty"));
    }
    if (!pem.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, root["controller_public_key"]),
                       ": key 'controller_public_key': ", pem.status().message()));
    }
    config.controller_public_key_pem = std::move(*pem);
  }
  ASSIGN_OR_RETURN(config.journal_path,
                   YamlString(root, "journal", file, false, DefaultJournalPath(config.id)));
  ASSIGN_OR_RETURN(config.spool_dir,
                   YamlString(root, "spool_dir", file, false,
                              DefaultSpoolDir(config.journal_path, config.id)));
  if (config.spool_dir.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, root["spool_dir"]), ": key 'spool_dir' is empty"));
  }
  // At least a few rounds; at most what a disk should give to telemetry in waiting.
  ASSIGN_OR_RETURN(const int64_t spool_max_bytes,
                   YamlInt(root, "spool_max_bytes", file,
                           static_cast<int64_t>(config.spool_max_bytes), 1024, int64_t{1} << 36));
  config.spool_max_bytes = static_cast<uint64_t>(spool_max_bytes);
  ASSIGN_OR_RETURN(config.result_journal_path, YamlString(root, "result_journal", file));
  if (!config.result_journal_path.empty() && config.result_journal_path == config.journal_path) {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": keys 'journal' and 'result_journal' name the same file ", config.journal_path));
  }
  ASSIGN_OR_RETURN(const int64_t result_bytes,
                   YamlInt(root, "result_journal_max_bytes", file,
                           static_cast<int64_t>(config.result_journal_max_bytes), int64_t{64} << 10,
                           int64_t{1} << 30));
  config.result_journal_max_bytes = static_cast<uint64_t>(result_bytes);
  ASSIGN_OR_RETURN(config.checkpoint_path, YamlString(root, "audit_checkpoint", file));
  if (!config.checkpoint_path.empty() && (config.checkpoint_path == config.journal_path ||
                                          config.checkpoint_path == ResultJournalPath(config))) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, root["audit_checkpoint"]),
                     ": key 'audit_checkpoint' names the command or result journal ",
                     config.checkpoint_path));
  }
  ASSIGN_OR_RETURN(config.max_command_lifetime,
                   YamlDuration(root, "max_command_lifetime", file, config.max_command_lifetime));
  if (config.max_command_lifetime < absl::Seconds(1) ||
      config.max_command_lifetime > absl::Hours(24)) {
    return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, root["max_command_lifetime"]),
                                                   ": key 'max_command_lifetime' must be between "
                                                   "1s and 24h"));
  }
  RETURN_IF_ERROR(ReadTls(root["tls"], file, config));
  return config;
}

}  // namespace

std::string ResultJournalPath(const AgentConfig& config) {
  if (!config.result_journal_path.empty()) {
    return config.result_journal_path;
  }
  // Not "JOURNAL.results": a file named JOURNAL.* is the command journal's evidence that it
  // existed, and would make a first start look like a lost journal.
  const absl::string_view journal = config.journal_path;
  if (journal.empty()) {
    return "";  // no command journal, no result journal: both in memory
  }
  if (absl::EndsWith(journal, ".journal")) {
    return absl::StrCat(journal.substr(0, journal.size() - 8), ".results");
  }
  return absl::StrCat(journal, "-results");
}

std::string CheckpointPath(const AgentConfig& config) {
  if (!config.checkpoint_path.empty()) {
    return config.checkpoint_path;
  }
  // Not "JOURNAL.checkpoint", for the reason given in ResultJournalPath.
  const absl::string_view journal = config.journal_path;
  if (journal.empty()) {
    return "";
  }
  if (absl::EndsWith(journal, ".journal")) {
    return absl::StrCat(journal.substr(0, journal.size() - 8), ".checkpoint");
  }
  return absl::StrCat(journal, "-checkpoint");
}

absl::StatusOr<AgentConfig> ParseAgentConfig(absl::string_view text, absl::string_view name,
                                             const CollectorRegistry& registry) {
  ASSIGN_OR_RETURN(YAML::Node root, LoadYamlString(text, name));
  try {
    return Build(root, name, registry);
  } catch (...) {
    return YamlExceptionStatus(name);
  }
}

absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path,
                                            const CollectorRegistry& registry) {
  ASSIGN_OR_RETURN(const std::string text, ReadConfigFile(path));
  return ParseAgentConfig(text, path, registry);
}

std::string DefaultJournalPath(const std::string& id) {
  return absl::StrCat(kAgentStateDir, "/", id, ".journal");
}

std::string DefaultSpoolDir(const std::string& journal_path, const std::string& id) {
  const std::string parent = std::filesystem::path(journal_path).parent_path().string();
  return absl::StrCat(parent.empty() ? "." : parent, "/", id, ".spool");
}

absl::StatusOr<AgentConfig> DefaultAgentConfig(const CollectorRegistry& registry) {
  return ParseAgentConfig("collectors: {host: {}}\n", "(built-in default config)", registry);
}

}  // namespace vigil::agent
