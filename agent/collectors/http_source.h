// Shared by the HTTP collectors (http_probe, nginx_status, http_json): reading one HTTP source
// from config (url, timeout, max_response_bytes, tls_ca) into options for the one HTTP client
// (common/http/http_client.h), and a bounded GET that times itself. Stateless; thread-safe.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/http/http_client.h"

namespace vigil::agent {

inline constexpr absl::Duration kMaxHttpSourceTimeout = absl::Seconds(60);
inline constexpr int64_t kMaxHttpSourceBytes = 64 << 20;

struct HttpSource {
  std::string url;
  http::HttpClientOptions options;  // timeout (connect and whole exchange) and size cap set
};

// Reads `url` (required, http:// or https://), `timeout` (1ms..60s), `max_response_bytes`
// (1 KiB..64 MiB) and `tls_ca` (a readable file, https only) from `node`; missing keys take the
// defaults given. Errors name the file, the line and `context`.key.
absl::StatusOr<HttpSource> ReadHttpSource(const YAML::Node& node, absl::string_view file,
                                          absl::string_view context,
                                          absl::Duration default_timeout,
                                          int64_t default_max_bytes);

// The keys ReadHttpSource reads, for YamlCheckKeys lists.
#define VIGIL_HTTP_SOURCE_KEYS "url", "timeout", "max_response_bytes", "tls_ca"

struct HttpOutcome {
  absl::StatusOr<http::HttpClientResponse> response;
  absl::Duration elapsed;
};

// GET source.url, bounded by its options; never throws.
HttpOutcome TimedHttpGet(const HttpSource& source);

// "[a-zA-Z_][a-zA-Z0-9_]*": a label name, a table name.
bool IsIdentifier(absl::string_view name);
// "[a-zA-Z_:][a-zA-Z0-9_:]*": a metric name.
bool IsMetricName(absl::string_view name);

}  // namespace vigil::agent
