// Alert rules: the YAML rule file, the expression language and the built-in defaults.
//
//   expr    := side op number | side / side op number
//   side    := operand | agg [by (labels)] (operand) [by (labels)]
//            | pNN by (labels) (selector)            (fleet-wide: the merged histograms' quantile)
//   operand := selector | pNN(selector) | fn(selector[range])
//   labels  := [label, ...]                          (empty: the whole fleet, one group)
//   agg  := sum | avg | min | max | count            (across agents: fleet-wide rules)
//   pNN  := p50 | p90 | p95 | p99, any two digits    (of a histogram, over the rule's window)
//   fn   := rate | irate                             (of a per-second rate, over `range`)
//   selector := metric [{label op "value", ...}] with = != =~ !~ on series or agent labels
//   range := a duration (30s, 5m), more than 0 and at most kMaxRange
//
// `pNN by (l, ...) (x)` merges the histograms of every matching series of every agent over the
// rule's window, per group of the listed labels, and takes the quantile of the merge (averaging
// per-agent quantiles would be wrong); `pNN(x)` stays per agent. Both sides of `/` are fleet-wide
// with the same `by` labels; they are matched group by group, and a group missing on either side
// or whose denominator is 0 has no value (never fires), as in PromQL.
//
// Parsing checks everything it can before the controller starts: unknown metrics, histogram
// versus gauge (for the built-in schema; a name outside it and outside the built-in collectors'
// prefixes is a scraped metric the agents declare, see DESIGN.md "Metric names"), operators, durations, severities and duplicate names, each error with file and
// line. Immutable once parsed; thread-safe.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "vigil/v1/agent_service.pb.h"
#include "vigil/v1/incident.pb.h"

namespace re2 {
class RE2;
}

namespace vigil::controller {

struct LabelMatcher {
  enum class Op { kEqual, kNotEqual, kRegex, kNotRegex };
  std::string label;
  Op op = Op::kEqual;
  std::string value;
  std::shared_ptr<const re2::RE2> regex;  // anchored; set for kRegex and kNotRegex

  bool Matches(absl::string_view actual) const;  // a missing label reads ""
};

enum class Comparison { kGreater, kGreaterEqual, kLess, kLessEqual, kEqual, kNotEqual };
bool Compare(double value, Comparison op, double threshold);
absl::string_view ComparisonText(Comparison op);

// kQuantile: `pNN by (...) (x)`, the quantile of the group's merged histograms.
enum class Aggregation { kNone, kSum, kAvg, kMin, kMax, kCount, kQuantile };

// rate(x[r]): the mean of the series' per-second-rate samples measured within the last r.
// irate(x[r]): its newest sample, when measured within the last r. Counters travel as
// per-second rates over the collection interval (DESIGN.md "Metric names"), so neither needs
// the counter itself.
enum class RangeFunction { kNone, kRate, kIrate };
absl::string_view RangeFunctionName(RangeFunction f);

// The longest range a rule may ask of rate()/irate(): what the controller keeps (issue 8's
// memory budget allows 5 minutes).
inline constexpr absl::Duration kMaxRange = absl::Minutes(5);

// One side of an expression: what is read from each series, and how it is aggregated.
struct Operand {
  Aggregation aggregation = Aggregation::kNone;
  std::vector<std::string> by;  // grouping labels of an aggregation
  double quantile = 0;          // > 0: a histogram quantile (0.95 for p95), per agent or merged
  std::string metric;
  // The metric is outside the built-in schema: scraped, declared by agents in their Hello. Its
  // kind is the expression's (pNN(x): a histogram, else a gauge); a series of the other kind
  // never fires it (see KindMismatches).
  bool scraped = false;
  // rate()/irate() and their range (kNone: the latest value, or pNN over the rule's window).
  RangeFunction range_function = RangeFunction::kNone;
  absl::Duration range = absl::ZeroDuration();
  std::vector<LabelMatcher> matchers;

  bool fleet_wide() const { return aggregation != Aggregation::kNone; }
};

// An expression is its operand (the numerator of a division: existing readers of `metric` or
// `aggregation` read it), optionally divided by a second, compared with a number.
struct Expression : Operand {
  std::optional<Operand> denominator;  // `A / B`: B (both fleet-wide, with the same `by`)
  Comparison op = Comparison::kGreater;
  double threshold = 0;
  std::string text;  // as written

  const Operand& numerator() const { return *this; }
  // The numerator (or the only operand), then the denominator if any.
  std::vector<const Operand*> operands() const;
};

// Parses one expression; errors say what is wrong and at which column.
absl::StatusOr<Expression> ParseExpression(absl::string_view text);

// A stricter severity for a value further past the threshold (DiskSpaceWarning: 0.95 -> SEV1).
struct SeverityTier {
  double threshold = 0;
  v1::Severity severity = v1::SEV3;
};

// A fix the rule suggests for its incidents (`suggest:` in the rule file). A parameter value is
// either literal or, whole, a diagnostic cell: "{pg_lock_waits.blocking_pid}" reads that column
// in the first row, with the column set, of the newest such table collected from the alert's
// agent. The table must be one the rule collects (`diagnostics:`).
struct SuggestTemplate {
  std::string action;
  std::vector<std::pair<std::string, std::string>> params;  // in file order
  std::string source;                                       // "file:line"
};

struct CellReference {
  std::string table;
  std::string column;
};
// The cell a whole parameter value refers to; nullopt for a literal value.
std::optional<CellReference> ParseCellReference(absl::string_view value);

inline constexpr size_t kMaxSuggestionsPerRule = 8;

struct Rule {
  std::string name;
  Expression expr;
  absl::Duration for_duration = absl::ZeroDuration();
  absl::Duration window = absl::Minutes(1);  // histogram quantiles look this far back
  v1::Severity severity = v1::SEV3;
  std::vector<SeverityTier> tiers;  // most severe first
  std::string summary;
  std::string runbook;
  std::map<std::string, std::string> labels;  // extra labels for its alerts (a Prometheus rule's labels:, severity excepted)
  std::vector<std::string> diagnostics;  // tables to collect when it opens or joins an incident
  std::vector<SuggestTemplate> suggest;  // fixes to suggest, in order
  std::string source;                    // "file:line", for messages

  // The severity for a value that meets the condition.
  v1::Severity SeverityFor(double value) const;
};

struct RuleFile {
  std::vector<Rule> rules;
  std::vector<std::string> errors;  // "file:line: rule NAME: problem", one per problem
  // Not errors: "file:line: rule NAME: metric 'x' is scraped (declared by agents), a histogram".
  std::vector<std::string> notes;
};

// Rules whose scraped metric an agent declares with the other kind (a gauge used as pNN(x), a
// histogram compared as a gauge, or a gauge that is not a per-second rate under rate()/irate()):
// such a rule never fires on that agent. One message each, naming the rule, its source, the
// metric and both kinds.
std::vector<std::string> KindMismatches(const std::vector<Rule>& rules,
                                        const std::vector<v1::MetricDeclaration>& declared);
// Scraped metrics the rules name that none of `declared` (every connected agent's
// declarations) has: "rule NAME (file:line): metric 'x' is declared by no connected agent".
std::vector<std::string> UndeclaredScrapedMetrics(
    const std::vector<Rule>& rules, const std::vector<v1::MetricDeclaration>& declared);

// Parses a rule file's text; `name` is used in messages. Reports every problem it finds.
// Pure and exception-free: any text yields a RuleFile (hostile text yields errors).
RuleFile ParseRules(absl::string_view text, absl::string_view name);
// Reads and parses a file; a missing file is one error naming it.
RuleFile LoadRuleFile(const std::string& path);
// The defaults taken from the runbooks (compiled in, so a controller without --rules alerts).
const std::string& DefaultRulesYaml();
std::vector<Rule> DefaultRules();

// How long the fleet must keep each histogram's intervals for `rules`: the longest `window` of a
// rule that reads a quantile (per agent or merged), and never less than kMinHistogramWindow (the
// `vigil metrics` quantiles read the last minute). The controller sets it at start and on reload.
inline constexpr absl::Duration kMinHistogramWindow = absl::Seconds(60);
absl::Duration HistogramWindowFor(const std::vector<Rule>& rules);

}  // namespace vigil::controller
