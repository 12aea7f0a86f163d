// The metric schema, written once: every metric an agent may send, with unit and help.
// Collectors, the rule checker, `vigil metrics` and /metrics all read it. Immutable; thread-safe.
#pragma once

#include <span>
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

}  // namespace vigil
