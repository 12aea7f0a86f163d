// The fleet endpoint's page: every connected agent's latest series in the Prometheus text
// exposition format 0.0.4, so one Prometheus job scrapes the whole fleet. Each sample carries
// `agent` and the agent's labels; gauges (per-second rates included, under their own names) are
// gauges; histograms are `_bucket{le}` counters since the controller started, in one fixed `le`
// list for every agent (CumulativeHistogram::Bounds), with `_sum` and `_count`.
// Pure functions over a snapshot (FleetState::ExposeConnected); thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "controller/ingest/fleet_state.h"

namespace vigil::controller {

// The `# HELP` text of a family, by its Vigil name; "" when there is none.
using FamilyHelp = std::function<std::string(absl::string_view name)>;

struct ExpositionStats {
  size_t agents = 0;
  size_t families = 0;
  size_t series = 0;  // gauges and histograms, one each however many lines
  // Gauges left out because another agent sends a histogram of the same name (one family has
  // one type), and series labels dropped because their sanitised name was taken twice.
  size_t conflicts = 0;
};

// Appends the page to `out`: families sorted by name, each with its `# HELP` and `# TYPE` once,
// its samples by agent id, then labels. Labels of a sample: `agent`, the agent's labels, then
// the series' own; a series label whose name the agent's side already uses is kept as
// `exported_NAME` (as Prometheus does for target labels). ResourceExhausted, with `out` cut
// short, as soon as the page passes `max_bytes`.
absl::StatusOr<ExpositionStats> RenderFleetExposition(
    const std::vector<FleetState::ExposedAgent>& agents, const FamilyHelp& help, size_t max_bytes,
    std::string* out);

// [a-zA-Z_:][a-zA-Z0-9_:]*: any other character becomes '_', a leading digit gets a '_' before it.
std::string SanitizeMetricName(absl::string_view name);
// [a-zA-Z_][a-zA-Z0-9_]*, and not the reserved `__` prefix: any other character becomes '_';
// a name that would start with a digit or with `__` gets `label_` before it; "" becomes "label_".
std::string SanitizeLabelName(absl::string_view name);
// Appends `value` as the exposition format quotes it: `\` `"` and newline escaped. Values are
// valid UTF-8 already (protobuf refuses other strings in the agents' messages).
void AppendLabelValue(absl::string_view value, std::string* out);
// Appends `help` with `\` and newline escaped.
void AppendHelpText(absl::string_view help, std::string* out);
// The shortest text that reads back as `value`; NaN, +Inf and -Inf as Prometheus writes them.
void AppendSampleValue(double value, std::string* out);

// True when `authorization` is exactly `Bearer TOKEN` (scheme in any case) for `token`, which
// must not be empty. The comparison takes the same time whatever the guess (SHA-256 of both,
// compared with CRYPTO_memcmp), so timing tells nothing about the token or its length.
bool BearerTokenMatches(absl::string_view authorization, absl::string_view token);

}  // namespace vigil::controller
