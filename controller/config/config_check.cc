#include "controller/config/config_check.h"

#include <sys/stat.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/command_signing.h"
#include "common/tls_files.h"
#include "common/transport.h"
#include "common/yaml_util.h"
#include "controller/http/fleet_endpoint.h"
#include "controller/remediation/policy.h"
#include "controller/rules/rule.h"

namespace vigil::controller {
namespace {

// The name a message uses for a setting: where the file gave it, or its flag.
std::string NameOf(const ControllerSettings& settings, absl::string_view key) {
  auto it = settings.origins.find(std::string(key));
  return it != settings.origins.end() ? it->second : FlagForKey(key);
}

// Every error of `status` (one a line) into `errors`.
void Collect(const absl::Status& status, std::vector<std::string>& errors) {
  if (status.ok()) return;
  for (absl::string_view line : absl::StrSplit(status.message(), '\n', absl::SkipWhitespace())) {
    errors.emplace_back(line);
  }
}

// The port of a gRPC listening address ("HOST:PORT", "[V6]:PORT"), or "" when it has none.
absl::string_view PortOf(absl::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || absl::EndsWith(address, "]")) {
    return "";
  }
  return address.substr(colon + 1);
}

// The agents' own address: plain text on loopback only, as for `listen`, and a port of its own
// (gRPC binds both with SO_REUSEPORT, so a shared port would split connections between them).
absl::Status CheckAgentListen(const ControllerSettings& settings) {
  const ControllerOptions& o = settings.options;
  const TransportFlags& t = o.transport;
  if (t.ca.empty() && t.cert.empty() && t.key.empty() && t.insecure &&
      !IsLoopbackAddress(o.agent_listen)) {
    return absl::InvalidArgumentError(absl::StrCat(NameOf(settings, "agent_listen"),
                                                   ": --insecure is refused for ", o.agent_listen,
                                                   ": plain text is allowed on loopback only"));
  }
  const absl::string_view port = PortOf(o.agent_listen);
  if (!port.empty() && port != "0" && port == PortOf(o.listen)) {
    return absl::InvalidArgumentError(absl::StrCat(
        NameOf(settings, "agent_listen"), ": ", o.agent_listen, " has the port of ",
        NameOf(settings, "listen"), " (", o.listen, "): give the agents a port of their own"));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> CheckControllerSettings(const ControllerSettings& settings) {
  const ControllerOptions& o = settings.options;
  std::vector<std::string> errors;
  if (o.listen.empty()) {
    errors.push_back(absl::StrCat(NameOf(settings, "listen"), ": no address to listen on"));
  }
  Collect(CheckServerTransport(o.transport,
                               TlsFileNames{.ca = NameOf(settings, "tls_ca"),
                                            .cert = NameOf(settings, "tls_cert"),
                                            .key = NameOf(settings, "tls_key")},
                               o.listen),
          errors);
  if (!o.agent_listen.empty()) {
    Collect(CheckAgentListen(settings), errors);
  }
  if (!o.http_listen.empty()) {
    const TlsFileNames names{.ca = NameOf(settings, "http_tls_ca"),
                             .cert = NameOf(settings, "http_tls_cert"),
                             .key = NameOf(settings, "http_tls_key")};
    if (o.http_tls_cert.empty() != o.http_tls_key.empty() ||
        (!o.http_tls_ca.empty() && o.http_tls_cert.empty())) {
      errors.push_back(absl::StrCat("HTTP TLS: ", names.cert, " and ", names.key,
                                    " go together, and ", names.ca, " needs both"));
    } else {
      Collect(CheckTlsFiles(TransportFlags{.insecure = false,
                                           .ca = o.http_tls_ca,
                                           .cert = o.http_tls_cert,
                                           .key = o.http_tls_key},
                            names),
              errors);
    }
  }
  if (!o.fleet_metrics_token_file.empty()) {
    if (o.http_listen.empty()) {
      errors.push_back(absl::StrCat(NameOf(settings, "fleet_metrics_token_file"),
                                    ": the fleet endpoint is served on the HTTP port, which is "
                                    "off (http_listen)"));
    } else if (absl::Status s = ReadBearerTokenFile(o.fleet_metrics_token_file).status();
               !s.ok()) {
      errors.push_back(absl::StrCat(NameOf(settings, "fleet_metrics_token_file"), ": ",
                                    s.message()));
    }
  }
  // A file that cannot be read is named by the key or flag that names it; a file that can, by
  // its own lines.
  for (const auto& [key, path] : {std::pair<absl::string_view, const std::string&>{
                                      "rules", o.rules_path},
                                  {"policy", o.policy_path}}) {
    if (path.empty()) {
      continue;  // the built-in set
    }
    absl::StatusOr<std::string> text = ReadConfigFile(path);
    if (!text.ok()) {
      errors.push_back(absl::StrCat(NameOf(settings, key), ": ", text.status().message()));
    } else if (key == "rules") {
      RuleFile rules = ParseRules(*text, path);
      errors.insert(errors.end(), rules.errors.begin(), rules.errors.end());
    } else if (absl::StatusOr<Policy> policy = ParsePolicy(*text, path); !policy.ok()) {
      Collect(policy.status(), errors);
    }
  }
  // The key is made at first start; one that is there must be usable.
  const std::string key_path = SigningKeyPath(o);
  struct stat st {};
  if (stat(key_path.c_str(), &st) == 0) {
    absl::StatusOr<std::string> pem = ReadConfigFile(key_path);
    absl::Status key_status = pem.status();
    if (pem.ok()) {
      key_status = CommandSigner::FromPem(*pem).status();
    }
    if (!key_status.ok()) {
      errors.push_back(absl::StrCat(NameOf(settings, "signing_key"), ": ", key_path,
                                    ": not a usable signing key: ", key_status.message()));
    }
  }
  if (stat(o.db_path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    errors.push_back(
        absl::StrCat(NameOf(settings, "db"), ": ", o.db_path, " is not a regular file"));
  }
  Collect(CheckDatabaseEvidence(o.db_path, key_path, o.init), errors);
  return errors;
}


}  // namespace vigil::controller
