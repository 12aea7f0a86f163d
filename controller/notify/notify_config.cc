#include "controller/notify/notify_config.h"

#include <exception>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/http/http_client.h"
#include "common/status.h"
#include "common/yaml_util.h"

namespace vigil::controller {
namespace {

// Secrets are small: an HMAC key or a routing key.
constexpr size_t kMaxSecretBytes = 4096;
// Names appear in metrics labels and on the command line.
constexpr size_t kMaxNameBytes = 64;

bool ValidName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) {
    return false;
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

absl::StatusOr<v1::Severity> ParseSeverity(absl::string_view text) {
  const std::string upper = absl::AsciiStrToUpper(text);
  for (int s = v1::SEV1; s <= v1::SEV4; ++s) {
    if (upper == v1::Severity_Name(static_cast<v1::Severity>(s))) {
      return static_cast<v1::Severity>(s);
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", text, "' is not one of SEV1, SEV2, SEV3, SEV4"));
}

// One receiver; every problem appended to `errors`, each naming file, line and key.
void ParseReceiver(const YAML::Node& node, absl::string_view file, size_t index,
                   std::set<std::string>& names, std::vector<std::string>& errors,
                   std::vector<Receiver>& out) {
  const std::string context = absl::StrCat("notifications.receivers[", index, "]");
  auto fail = [&](const YAML::Node& at, absl::string_view key, absl::string_view why) {
    errors.push_back(absl::StrCat(YamlWhere(file, at), ": key '", context, ".", key, "': ", why));
  };
  if (!node.IsMap()) {
    errors.push_back(absl::StrCat(YamlWhere(file, node), ": ", context, " must be a map"));
    return;
  }
  if (absl::Status s = YamlCheckKeys(node, file, context,
                                     {"name", "type", "url", "format", "secret_file", "routing_key",
                                      "severities", "match", "timeout"});
      !s.ok()) {
    errors.emplace_back(s.message());
    return;
  }
  Receiver r;
  const size_t before = errors.size();
  auto text = [&](absl::string_view key, bool required) -> std::string {
    absl::StatusOr<std::string> v = YamlString(node, key, file, required);
    if (!v.ok()) {
      errors.push_back(absl::StrCat(v.status().message(), " (in ", context, ")"));
      return "";
    }
    return *v;
  };
  r.name = text("name", true);
  if (!r.name.empty()) {
    if (!ValidName(r.name)) {
      fail(node["name"], "name",
           absl::StrCat("'", r.name, "' must be 1-", kMaxNameBytes,
                        " letters, digits, '-', '_' or '.'"));
    } else if (!names.insert(r.name).second) {
      fail(node["name"], "name", absl::StrCat("receiver '", r.name, "' is defined twice"));
    }
  }
  const std::string type = text("type", true);
  if (type == "alertmanager") {
    r.type = ReceiverType::kAlertmanager;
  } else if (type == "webhook") {
    r.type = ReceiverType::kWebhook;
  } else if (!type.empty()) {
    fail(node["type"], "type", absl::StrCat("'", type, "' is not one of alertmanager, webhook"));
  }
  r.url = text("url", true);
  if (!r.url.empty()) {
    if (absl::StatusOr<http::ParsedUrl> url = http::ParseHttpUrl(r.url); !url.ok()) {
      fail(node["url"], "url", url.status().message());
    }
  }
  const std::string format = text("format", false);
  if (format.empty() || format == "generic") {
    r.format = WebhookFormat::kGeneric;
  } else if (format == "pagerduty") {
    r.format = WebhookFormat::kPagerDuty;
  } else if (format == "slack") {
    r.format = WebhookFormat::kSlack;
  } else {
    fail(node["format"], "format",
         absl::StrCat("'", format, "' is not one of generic, pagerduty, slack"));
  }
  if (!format.empty() && r.type == ReceiverType::kAlertmanager) {
    fail(node["format"], "format", "only webhook receivers have a format");
  }
  r.secret_file = text("secret_file", false);
  r.routing_key = text("routing_key", false);
  if (!r.secret_file.empty()) {
    absl::StatusOr<std::string> secret = ReadConfigFile(r.secret_file);
    if (!secret.ok()) {
      fail(node["secret_file"], "secret_file", secret.status().message());
    } else if (secret->size() > kMaxSecretBytes) {
      fail(node["secret_file"], "secret_file",
           absl::StrCat(r.secret_file, " holds more than ", kMaxSecretBytes, " bytes"));
    } else {
      r.secret = std::string(absl::StripTrailingAsciiWhitespace(*secret));
      if (r.secret.empty()) {
        fail(node["secret_file"], "secret_file", absl::StrCat(r.secret_file, " is empty"));
      }
    }
  }
  if (r.type == ReceiverType::kWebhook && errors.size() == before) {
    if (r.format == WebhookFormat::kGeneric && r.secret_file.empty()) {
      fail(node, "secret_file", "a generic webhook needs a secret_file (the HMAC key)");
    }
    if (r.format == WebhookFormat::kPagerDuty && r.routing_key.empty() && r.secret.empty()) {
      fail(node, "routing_key", "a pagerduty webhook needs routing_key or secret_file");
    }
  }
  if (r.type == ReceiverType::kAlertmanager && !r.routing_key.empty()) {
    fail(node["routing_key"], "routing_key", "only pagerduty webhooks have a routing key");
  }
  if (YAML::Node severities = node["severities"]; severities.IsDefined() && !severities.IsNull()) {
    absl::StatusOr<std::vector<std::string>> list = YamlStringList(node, "severities", file);
    if (!list.ok()) {
      errors.push_back(absl::StrCat(list.status().message(), " (in ", context, ")"));
    } else {
      for (const std::string& s : *list) {
        absl::StatusOr<v1::Severity> severity = ParseSeverity(s);
        if (!severity.ok()) {
          fail(severities, "severities", severity.status().message());
        } else {
          r.severities.insert(*severity);
        }
      }
    }
  }
  if (YAML::Node match = node["match"]; match.IsDefined() && !match.IsNull()) {
    if (!match.IsMap()) {
      fail(match, "match", "must be a map of label: value");
    } else {
      for (const auto& kv : match) {
        absl::StatusOr<std::string> key = YamlKey(kv.first, file, context + ".match");
        if (!key.ok()) {
          errors.emplace_back(key.status().message());
          continue;
        }
        if (MatchKeys().count(*key) == 0) {
          fail(kv.first, absl::StrCat("match.", *key),
               absl::StrCat("unknown label (expected one of: ", absl::StrJoin(MatchKeys(), ", "),
                            ")"));
          continue;
        }
        if (!kv.second.IsScalar()) {
          fail(kv.second, absl::StrCat("match.", *key), "must be a string");
          continue;
        }
        r.match[*key] = kv.second.Scalar();
      }
    }
  }
  absl::StatusOr<absl::Duration> timeout = YamlDuration(node, "timeout", file, r.timeout);
  if (!timeout.ok()) {
    errors.push_back(absl::StrCat(timeout.status().message(), " (in ", context, ")"));
  } else if (*timeout <= absl::ZeroDuration() || *timeout > absl::Minutes(1)) {
    fail(node["timeout"], "timeout", "must be more than 0 and at most 1m");
  } else {
    r.timeout = *timeout;
  }
  if (errors.size() == before) {
    out.push_back(std::move(r));
  }
}

}  // namespace

const Receiver* NotifyConfig::Find(absl::string_view name) const {
  for (const Receiver& r : receivers) {
    if (r.name == name) {
      return &r;
    }
  }
  return nullptr;
}

std::vector<std::string> NotifyConfig::Names() const {
  std::vector<std::string> names;
  for (const Receiver& r : receivers) {
    names.push_back(r.name);
  }
  return names;
}

const std::set<std::string>& MatchKeys() {
  static const auto* keys = new std::set<std::string>{"agent", "alertname", "service"};
  return *keys;
}

absl::StatusOr<NotifyConfig> ParseNotifyConfig(const YAML::Node& node, absl::string_view file) {
  NotifyConfig config;
  if (!node.IsDefined() || node.IsNull()) {
    return config;
  }
  try {
    RETURN_IF_ERROR(YamlCheckKeys(node, file, "notifications",
                                  {"external_url", "receivers", "resend_interval", "retry_max"}));
    std::vector<std::string> errors;
    if (absl::StatusOr<std::string> url = YamlString(node, "external_url", file); !url.ok()) {
      errors.emplace_back(url.status().message());
    } else if (!url->empty()) {
      if (absl::StatusOr<http::ParsedUrl> parsed = http::ParseHttpUrl(*url); !parsed.ok()) {
        errors.push_back(
            absl::StrCat(YamlWhere(file, node["external_url"]),
                         ": key 'notifications.external_url': ", parsed.status().message()));
      }
      config.external_url = std::string(absl::StripSuffix(*url, "/"));
    }
    absl::StatusOr<absl::Duration> resend =
        YamlDuration(node, "resend_interval", file, config.resend_interval);
    if (!resend.ok()) {
      errors.emplace_back(resend.status().message());
    } else if (*resend < absl::Seconds(1) || *resend > absl::Minutes(4)) {
      // Alertmanager's default resolve_timeout is 5 m: a longer interval lets alerts lapse.
      errors.push_back(absl::StrCat(YamlWhere(file, node["resend_interval"]),
                                    ": key 'notifications.resend_interval': must be between 1s "
                                    "and 4m (Alertmanager resolves alerts not re-sent within its "
                                    "resolve_timeout, 5m by default)"));
    } else {
      config.resend_interval = *resend;
    }
    absl::StatusOr<absl::Duration> retry = YamlDuration(node, "retry_max", file, config.retry_max);
    if (!retry.ok()) {
      errors.emplace_back(retry.status().message());
    } else if (*retry < absl::Seconds(1) || *retry > absl::Minutes(5)) {
      errors.push_back(absl::StrCat(YamlWhere(file, node["retry_max"]),
                                    ": key 'notifications.retry_max': must be between 1s and 5m"));
    } else {
      config.retry_max = *retry;
    }
    YAML::Node receivers = node["receivers"];
    if (receivers.IsDefined() && !receivers.IsNull()) {
      if (!receivers.IsSequence()) {
        errors.push_back(absl::StrCat(YamlWhere(file, receivers),
                                      ": key 'notifications.receivers': must be a list"));
      } else {
        std::set<std::string> names;
        for (size_t i = 0; i < receivers.size(); ++i) {
          ParseReceiver(receivers[i], file, i, names, errors, config.receivers);
        }
      }
    }
    if (!errors.empty()) {
      return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
    }
  } catch (const std::exception&) {
    return YamlExceptionStatus(file);
  }
  return config;
}

}  // namespace vigil::controller
