#include "controller/config/controller_config.h"

#include <sys/stat.h>

#include <cstdint>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "common/yaml_util.h"
#include "controller/http/self_alerts.h"
#include "controller/notify/notify_config.h"

namespace vigil::controller {
namespace {

template <typename T>
using Field = T& (*)(ControllerSettings&);

// One key: reads its value from the root map and, when `apply`, stores it.
struct Key {
  std::string name;
  std::function<absl::Status(const YAML::Node& root, absl::string_view file, bool apply,
                             ControllerSettings& settings)>
      read;
};

Key Text(const std::string& name, Field<std::string> field) {
  return {name, [name, field](const YAML::Node& root, absl::string_view file, bool apply,
                              ControllerSettings& s) -> absl::Status {
            ASSIGN_OR_RETURN(std::string value, YamlString(root, name, file));
            if (apply) {
              field(s) = std::move(value);
            }
            return absl::OkStatus();
          }};
}

template <typename N>
Key Number(const std::string& name, Field<N> field, int64_t min, int64_t max) {
  return {name, [name, field, min, max](const YAML::Node& root, absl::string_view file, bool apply,
                                        ControllerSettings& s) -> absl::Status {
            ASSIGN_OR_RETURN(int64_t value, YamlInt(root, name, file, 0, min, max));
            if (apply) {
              field(s) = static_cast<N>(value);
            }
            return absl::OkStatus();
          }};
}

Key Count(const std::string& name, Field<size_t> field, int64_t min, int64_t max) {
  return Number(name, field, min, max);
}

Key Level(const std::string& name, Field<int> field, int64_t min, int64_t max) {
  return Number(name, field, min, max);
}

Key Span(const std::string& name, Field<absl::Duration> field) {
  return {name, [name, field](const YAML::Node& root, absl::string_view file, bool apply,
                              ControllerSettings& s) -> absl::Status {
            ASSIGN_OR_RETURN(absl::Duration value,
                             YamlDuration(root, name, file, absl::ZeroDuration()));
            if (apply) {
              field(s) = value;
            }
            return absl::OkStatus();
          }};
}

Key Switch(const std::string& name, Field<bool> field) {
  return {name, [name, field](const YAML::Node& root, absl::string_view file, bool apply,
                              ControllerSettings& s) -> absl::Status {
            ASSIGN_OR_RETURN(bool value, YamlBool(root, name, file, false));
            if (apply) {
              field(s) = value;
            }
            return absl::OkStatus();
          }};
}

// The log levels SetupLogging knows by these names.
Key LogLevel() {
  return {"log_level", [](const YAML::Node& root, absl::string_view file, bool apply,
                          ControllerSettings& s) -> absl::Status {
            ASSIGN_OR_RETURN(std::string value, YamlString(root, "log_level", file));
            static const std::set<std::string> kLevels = {"trace", "debug", "info",    "warn",
                                                          "error", "critical", "off"};
            if (kLevels.count(value) == 0) {
              return absl::InvalidArgumentError(absl::StrCat(
                  YamlWhere(file, root["log_level"]), ": key 'log_level': '", value,
                  "' is not one of ", absl::StrJoin(kLevels, ", ")));
            }
            if (apply) {
              s.log_level = std::move(value);
            }
            return absl::OkStatus();
          }};
}

// The `notifications` section: receivers of incident notifications (file only: no flag).
Key Notifications() {
  return {"notifications", [](const YAML::Node& root, absl::string_view file, bool apply,
                              ControllerSettings& s) -> absl::Status {
            ASSIGN_OR_RETURN(NotifyConfig config, ParseNotifyConfig(root["notifications"], file));
            if (apply) {
              s.options.notifications = std::move(config);
            }
            return absl::OkStatus();
          }};
}

// The `webhook_self_alerts` section: alerts about Vigil the webhook never makes incidents (file
// only: no flag).
Key SelfAlerts() {
  return {"webhook_self_alerts",
          [](const YAML::Node& root, absl::string_view file, bool apply,
             ControllerSettings& s) -> absl::Status {
            ASSIGN_OR_RETURN(std::vector<SelfAlertRule> rules,
                             ParseSelfAlertRules(root["webhook_self_alerts"], file));
            if (apply) {
              s.options.webhook_self_alerts = std::move(rules);
            }
            return absl::OkStatus();
          }};
}

// In the order of the README's table; each is its flag in snake_case.
const std::vector<Key>& Keys() {
  static const auto* keys = new std::vector<Key>{
      Text("listen", [](ControllerSettings& s) -> std::string& { return s.options.listen; }),
      Text("db", [](ControllerSettings& s) -> std::string& { return s.options.db_path; }),
      Text("http_listen",
           [](ControllerSettings& s) -> std::string& { return s.options.http_listen; }),
      Text("http_tls_cert",
           [](ControllerSettings& s) -> std::string& { return s.options.http_tls_cert; }),
      Text("http_tls_key",
           [](ControllerSettings& s) -> std::string& { return s.options.http_tls_key; }),
      Text("http_tls_ca",
           [](ControllerSettings& s) -> std::string& { return s.options.http_tls_ca; }),
      Count(
          "webhook_max_alerts",
          [](ControllerSettings& s) -> size_t& { return s.options.webhook.max_alerts_per_request; },
          1, 1'000'000),
      Count(
          "webhook_max_alerts_per_minute",
          [](ControllerSettings& s) -> size_t& { return s.options.webhook.max_alerts_per_minute; },
          1, 100'000'000),
      SelfAlerts(),
      Text(
          "fleet_metrics_token_file",
          [](ControllerSettings& s) -> std::string& { return s.options.fleet_metrics_token_file; }),
      Text("rules", [](ControllerSettings& s) -> std::string& { return s.options.rules_path; }),
      Span("correlation_window",
           [](ControllerSettings& s) -> absl::Duration& {
             return s.options.incidents.correlation_window;
           }),
      Text("policy", [](ControllerSettings& s) -> std::string& { return s.options.policy_path; }),
      Text("signing_key",
           [](ControllerSettings& s) -> std::string& { return s.options.signing_key_path; }),
      Text("audit_key",
           [](ControllerSettings& s) -> std::string& { return s.options.audit_key_path; }),
      Span("checkpoint_every",
           [](ControllerSettings& s) -> absl::Duration& { return s.options.checkpoints.every; }),
      Count(
          "checkpoint_every_events",
          [](ControllerSettings& s) -> size_t& { return s.options.checkpoints.every_events; }, 1,
          100'000'000),
      Text("checkpoint_log",
           [](ControllerSettings& s) -> std::string& { return s.options.checkpoints.log_path; }),
      LogLevel(),
      Span("result_patience",
           [](ControllerSettings& s) -> absl::Duration& {
             return s.options.remediation.result_patience;
           }),
      Span("telemetry_max_skew",
           [](ControllerSettings& s) -> absl::Duration& {
             return s.options.ingest_limits.max_future_skew;
           }),
      Span(
          "telemetry_max_age",
          [](ControllerSettings& s) -> absl::Duration& { return s.options.ingest_limits.max_age; }),
      Span("evict_after",
           [](ControllerSettings& s) -> absl::Duration& { return s.options.evict_after; }),
      Count(
          "admission_queue",
          [](ControllerSettings& s) -> size_t& { return s.options.admission_queue; }, 1, 1'000'000),
      Span("admission_max_delay",
           [](ControllerSettings& s) -> absl::Duration& { return s.options.admission_max_delay; }),
      Level(
          "ingest_nice", [](ControllerSettings& s) -> int& { return s.options.ingest_nice; }, 0,
          19),
      Text("agent_listen",
           [](ControllerSettings& s) -> std::string& { return s.options.agent_listen; }),
      Level(
          "agent_listen_backlog",
          [](ControllerSettings& s) -> int& { return s.options.agent_listen_backlog; }, 1, 65535),
      Switch("insecure",
             [](ControllerSettings& s) -> bool& { return s.options.transport.insecure; }),
      Text("tls_ca", [](ControllerSettings& s) -> std::string& { return s.options.transport.ca; }),
      Text("tls_cert",
           [](ControllerSettings& s) -> std::string& { return s.options.transport.cert; }),
      Text("tls_key",
           [](ControllerSettings& s) -> std::string& { return s.options.transport.key; }),
      Notifications(),
  };
  return *keys;
}

// Flags that stay on the command line, and why.
const std::map<std::string, std::string>& CommandLineOnly() {
  static const auto* only = new std::map<std::string, std::string>{
      {"init",
       "--init is for the command line only: in a file it would start a new, empty database "
       "whenever the old one goes missing"},
      {"config", "a config file cannot name another"},
      {"check_config", "--check-config is for the command line only"},
  };
  return *only;
}

// One error a line: control characters a value or yaml-cpp's message carries (a quoted "\n" in
// a key, an escape yaml-cpp quotes) are written as escapes.
std::string OneLine(absl::string_view message) {
  std::string out;
  for (const char c : message) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      absl::StrAppend(&out, c == '\n' ? "\\n" : absl::StrCat("\\x", absl::Hex(u, absl::kZeroPad2)));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

absl::Status Apply(const YAML::Node& root, absl::string_view file, const GivenOnCommandLine& given,
                   ControllerSettings& settings) {
  if (!root.IsDefined() || root.IsNull()) {
    return absl::OkStatus();  // an empty file: every setting stays as it is
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(
        YamlWhere(file, root), ": the controller config must be a map of settings (listen, db, ...)"));
  }
  std::vector<std::string> errors;
  std::map<std::string, int> seen;  // key -> line
  for (const auto& kv : root) {
    absl::StatusOr<std::string> name = YamlKey(kv.first, file, "the controller config");
    if (!name.ok()) {
      errors.emplace_back(name.status().message());
      continue;
    }
    const int line = kv.first.Mark().is_null() ? 0 : kv.first.Mark().line + 1;
    if (auto [it, fresh] = seen.emplace(*name, line); !fresh) {
      errors.push_back(absl::StrCat(YamlWhere(file, kv.first), ": key '", *name,
                                    "' given twice (first on line ", it->second, ")"));
      continue;
    }
    if (auto only = CommandLineOnly().find(*name); only != CommandLineOnly().end()) {
      errors.push_back(absl::StrCat(YamlWhere(file, kv.first), ": key '", *name,
                                    "' is not a config key: ", only->second));
      continue;
    }
    const Key* key = nullptr;
    for (const Key& k : Keys()) {
      if (k.name == *name) {
        key = &k;
      }
    }
    if (key == nullptr) {
      errors.push_back(absl::StrCat(YamlWhere(file, kv.first), ": unknown key '", *name,
                                    "' in the controller config (known: ",
                                    absl::StrJoin(ControllerConfigKeys(), ", "), ")"));
      continue;
    }
    if (kv.second.IsNull()) {
      errors.push_back(absl::StrCat(YamlWhere(file, kv.first), ": key '", *name,
                                    "' has no value (remove it to keep the default)"));
      continue;
    }
    // A section only the file has (no flag to win over it) always applies.
    const bool apply =
        *name == "notifications" || *name == "webhook_self_alerts" || !given(FlagForKey(*name));
    if (absl::Status s = key->read(root, file, apply, settings); !s.ok()) {
      // A section (notifications, webhook_self_alerts) reports each problem on a line of its own.
      bool first = true;
      for (absl::string_view line : absl::StrSplit(s.message(), '\n')) {
        // A problem's own text may hold a newline (a value YAML folded over lines): it stays on
        // the line of its problem, which starts with the file's name.
        if (!first && !absl::StartsWith(line, file)) {
          absl::StrAppend(&errors.back(), "\\n", line);
        } else {
          errors.emplace_back(line);
        }
        first = false;
      }
      continue;
    }
    if (apply) {
      settings.origins[*name] = absl::StrCat(YamlWhere(file, kv.first), ": key '", *name, "'");
    }
  }
  if (!errors.empty()) {
    for (std::string& e : errors) {
      e = OneLine(e);
    }
    return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  }
  if (settings.options.http_listen == "off") {
    settings.options.http_listen.clear();
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& ControllerConfigKeys() {
  static const auto* names = [] {
    auto* v = new std::vector<std::string>();
    for (const Key& k : Keys()) {
      v->push_back(k.name);
    }
    return v;
  }();
  return *names;
}

std::string FlagForKey(absl::string_view key) {
  return absl::StrCat("--", absl::StrReplaceAll(key, {{"_", "-"}}));
}

absl::Status ApplyControllerConfig(absl::string_view text, absl::string_view file,
                                   const GivenOnCommandLine& given, ControllerSettings& settings) {
  // Apply's errors are one a line already; these are one error each.
  absl::StatusOr<YAML::Node> root = LoadYamlString(text, file);
  if (!root.ok()) {
    return absl::Status(root.status().code(), OneLine(root.status().message()));
  }
  try {
    return Apply(*root, file, given, settings);
  } catch (...) {
    const absl::Status status = YamlExceptionStatus(file);
    return absl::Status(status.code(), OneLine(status.message()));
  }
}

absl::Status LoadControllerConfig(const std::string& path, const GivenOnCommandLine& given,
                                  ControllerSettings& settings) {
  ASSIGN_OR_RETURN(const std::string text, ReadConfigFile(path));
  return ApplyControllerConfig(text, path, given, settings);
}

absl::StatusOr<std::string> ChooseControllerConfig(bool given, const std::string& path,
                                                   const std::string& default_path) {
  struct stat st {};
  if (given) {
    if (!path.empty() && stat(path.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("--config=", path, ": no such file"));
    }
    return path;
  }
  return stat(default_path.c_str(), &st) == 0 ? default_path : "";
}

}  // namespace vigil::controller
