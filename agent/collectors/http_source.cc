#include "agent/collectors/http_source.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/yaml_util.h"

namespace vigil::agent {

absl::StatusOr<HttpSource> ReadHttpSource(const YAML::Node& node, absl::string_view file,
                                          absl::string_view context,
                                          absl::Duration default_timeout,
                                          int64_t default_max_bytes) {
  HttpSource source;
  ASSIGN_OR_RETURN(source.url, YamlString(node, "url", file, true));
  absl::StatusOr<http::ParsedUrl> parsed = http::ParseHttpUrl(source.url);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, node["url"]), ": ", context,
                                                   ".url: ", parsed.status().message()));
  }
  ASSIGN_OR_RETURN(absl::Duration timeout, YamlDuration(node, "timeout", file, default_timeout));
  if (timeout <= absl::ZeroDuration() || timeout > kMaxHttpSourceTimeout) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, node["timeout"]), ": ", context, ".timeout ",
                     absl::FormatDuration(timeout), " must be above 0 and at most ",
                     absl::FormatDuration(kMaxHttpSourceTimeout)));
  }
  source.options.timeout = timeout;
  source.options.connect_timeout = std::min(timeout, source.options.connect_timeout);
  ASSIGN_OR_RETURN(int64_t max_bytes, YamlInt(node, "max_response_bytes", file, default_max_bytes,
                                              1024, kMaxHttpSourceBytes));
  source.options.max_response_bytes = static_cast<size_t>(max_bytes);
  ASSIGN_OR_RETURN(source.options.tls_ca_file, YamlString(node, "tls_ca", file));
  if (!source.options.tls_ca_file.empty()) {
    if (!parsed->tls) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, node["tls_ca"]), ": ",
                                                     context, ".tls_ca is set but url '",
                                                     source.url, "' is not https"));
    }
    if (access(source.options.tls_ca_file.c_str(), R_OK) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, node["tls_ca"]), ": ",
                                                     context, ".tls_ca '",
                                                     source.options.tls_ca_file,
                                                     "' is not a readable file"));
    }
  }
  return source;
}

HttpOutcome TimedHttpGet(const HttpSource& source) {
  const absl::Time start = absl::Now();
  HttpOutcome outcome{http::HttpGet(source.url, source.options), absl::ZeroDuration()};
  outcome.elapsed = absl::Now() - start;
  return outcome;
}

bool IsIdentifier(absl::string_view name) {
  if (name.empty() || name.size() > 64) {  // the controller's label key bound
    return false;
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) {
      return false;
    }
  }
  return true;
}

bool IsMetricName(absl::string_view name) {
  if (name.empty() || name.size() > 128) {  // the controller's metric name bound
    return false;
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) {
      return false;
    }
  }
  return true;
}

}  // namespace vigil::agent
