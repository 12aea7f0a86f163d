// Alerts about Vigil itself, recognised by the Alertmanager webhook so that they never become
// incidents: Vigil's own notifications routed back (label vigil_source="vigil", always), and
// alerts whose labels match one of the settings file's `webhook_self_alerts` entries (by default
// a `job`, `service` or `app` named vigil or vigil-*/vigil_*: a Prometheus alert on the
// controller's /metrics or on its fleet page). An incident about the incident system, fed back
// into it, would page about itself in a loop. Matchers are Alertmanager's (`label op "value"`,
// op = != =~ !~, regexes anchored). Parsing is pure; parsed rules are immutable; thread-safe.
#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"

namespace re2 {
class RE2;
}

namespace vigil::controller {

// The label every alert Vigil sends to Alertmanager carries (payloads.h writes it).
inline constexpr absl::string_view kOwnSourceLabel = "vigil_source";
inline constexpr absl::string_view kOwnSourceValue = "vigil";
// The reason (metric label) of Vigil's own notifications; no configured entry may take it.
inline constexpr absl::string_view kSentByVigilReason = "vigil_source";

struct AlertLabelMatcher {
  enum class Op { kEqual, kNotEqual, kRegex, kNotRegex };
  std::string label;
  Op op = Op::kEqual;
  std::string value;
  std::shared_ptr<const re2::RE2> regex;  // anchored; set for kRegex and kNotRegex
  std::string text;                       // as written

  bool Matches(const google::protobuf::Map<std::string, std::string>& labels) const;
};

// One entry: an alert matching every matcher is about Vigil, for the reason `name`.
struct SelfAlertRule {
  std::string name;
  std::vector<AlertLabelMatcher> matchers;
};

// Limits on the section: the names become metric labels, the matchers run on every alert.
inline constexpr size_t kMaxSelfAlertRules = 64;
inline constexpr size_t kMaxMatchersPerRule = 16;

// `label op "value"` or `label op value`, e.g. job=~"vigil|vigil-.*"; InvalidArgument saying
// what is wrong (bad label name, no operator, unterminated quote, a regex RE2 refuses).
absl::StatusOr<AlertLabelMatcher> ParseAlertLabelMatcher(absl::string_view text);

// vigil_job: job=~"vigil|vigil[-_].*", vigil_service: service=~"..." and vigil_app: app=~"...",
// the same pattern.
std::vector<SelfAlertRule> DefaultSelfAlertRules();

// Reads the `webhook_self_alerts` node: a list of {name, matchers: [..]} (an empty list: only
// Vigil's own notifications are recognised). Errors list every problem, one a line,
// "FILE:LINE: key 'webhook_self_alerts[1].matchers[0]': why".
absl::StatusOr<std::vector<SelfAlertRule>> ParseSelfAlertRules(const YAML::Node& node,
                                                               absl::string_view file);

// Why an alert with `labels` is about Vigil: 0 for vigil_source="vigil" (kSentByVigilReason),
// else the first matching rule's index + 1; nullopt when it is not about Vigil.
std::optional<size_t> SelfAlertReason(
    const std::vector<SelfAlertRule>& rules,
    const google::protobuf::Map<std::string, std::string>& labels);

}  // namespace vigil::controller
