// Prometheus rule files read as Vigil rules: a `groups:` file or a bare list of `- alert:`
// entries, their labels and annotations, and the PromQL subset of the runbooks translated into
// Vigil's expression grammar (rule.h), which ParseExpression then parses, so both languages share
// one evaluator. Pure functions over text; thread-safe.
//
// Translations:
//   histogram_quantile(0.95, sum by (le, l) (rate(x_bucket{m}[r])))  ->  p95 by (l) (x{m}),
//                                                                         the rule's window = r
//   histogram_quantile(0.95, rate(x_bucket{m}[r]))                   ->  p95(x{m}), window = r
//   agg [by (l)] (rate|irate(x{m}[r])) / agg [by (l)] (...) > n       ->  the same, in Vigil's form
// Everything else PromQL has (without, offset, @, subqueries, on/ignoring/group_left, other
// functions and operators, recording rules) is an error naming the construct and where it
// stands in the file.
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "controller/rules/rule.h"

namespace vigil::controller {

// Prometheus metric name -> the Vigil metric read in its place.
using PromNameMap = std::map<std::string, std::string, std::less<>>;

// The runbook's application metrics onto the nginx collector's, for fleets whose application is
// not instrumented: http_request_duration_seconds (a histogram, `_bucket` under
// histogram_quantile) -> nginx_request_duration_seconds, and http_requests_total (a counter,
// under rate()/irate()) -> nginx_requests_per_second. A `groups:` file's `name_map:` replaces it.
const PromNameMap& DefaultPromNameMap();

struct PromTranslation {
  absl::Status status;      // not OK: what is unsupported or malformed, without a position
  size_t error_offset = 0;  // where in the PromQL text (byte offset) when !status.ok()
  std::string vigil;        // the expression in Vigil's grammar
  // offsets[i]: the byte of the PromQL text vigil[i] comes from, so an error ParseExpression
  // finds in the translation points into what the user wrote.
  std::vector<size_t> offsets;
  std::optional<absl::Duration> window;  // histogram_quantile's range: the rule's window
  std::vector<std::pair<std::string, std::string>> renamed;  // name-map hits, in order
};

// Translates one PromQL expression. Never throws; any text yields a translation or an error.
PromTranslation TranslatePromQL(absl::string_view promql, const PromNameMap& names);

// True when a parsed rule file is in the Prometheus format: a top-level `groups:` or a list.
bool IsPrometheusRuleFile(const YAML::Node& root);

// Reads a Prometheus rule file already parsed from `text` (which positions are computed
// against); `name` is used in messages. Every problem is an error "name:LINE[:COL]: ..."; each
// loaded rule gets a note saying what it was translated to.
RuleFile ParsePrometheusRules(const YAML::Node& root, absl::string_view text,
                              absl::string_view name);

}  // namespace vigil::controller
