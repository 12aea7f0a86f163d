// The metric schema, written once: every metric an agent may send, with unit and help.
// Collectors, the rule checker, `vigil metrics` and /metrics all read it. Immutable; thread-safe.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace vigil {

enum class MetricKind { kGauge, kHistogram };

struct MetricInfo {
  absl::string_view name;
  MetricKind kind;
  absl::string_view unit;
  absl::string_view help;
};

std::span<const MetricInfo> AllMetrics();
// nullptr when `name` is not part of the schema.
const MetricInfo* FindMetric(absl::string_view name);
// A counter the agent sends as its per-second rate over the collection interval (unit "1/s":
// the `*_per_second` metrics), which `rate(x[r])` may average. Scraped counters say so in their
// declaration (MetricDeclaration.per_second_rate).
bool IsPerSecondRate(const MetricInfo& metric);

// The name prefixes of the built-in collectors ("host_", "nginx_", "pg_", ...), derived from the
// schema: for each `<c>_up`, "<c>_"; for any other name no such prefix covers, its first word
// and "_". Names under them belong to the schema; a scraped (declared) metric lives outside.
const std::vector<std::string>& ReservedMetricPrefixes();
// The reserved prefix `name` starts with (the longest), or "" when none.
absl::string_view ReservedPrefixOf(absl::string_view name);
// The built-in name closest to `name` (edit distance), for "did you mean"; nullptr when none
// is within half the name's length.
const MetricInfo* NearestMetric(absl::string_view name);

}  // namespace vigil
