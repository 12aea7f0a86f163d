#include "controller/rules/rule.h"

#include <re2/re2.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/action_schema.h"
#include "common/metric_schema.h"
#include "common/yaml_util.h"
#include "controller/rules/prometheus_rules.h"

namespace vigil::controller {
namespace {

// A cursor over an expression; every error names the column (1-based) it stopped at.
class ExprParser {
 public:
  explicit ExprParser(absl::string_view text) : text_(text) {}

  absl::StatusOr<Expression> Parse() {
    Expression expr;
    expr.text = std::string(absl::StripAsciiWhitespace(text_));
    if (absl::Status s = ParseSide(expr); !s.ok()) {
      return s;
    }
    if (PeekChar() == '/') {
      const size_t slash = pos_;
      if (!expr.fleet_wide()) {
        return Error(NotFleetWide("left"));
      }
      ++pos_;
      SkipSpace();
      const size_t right = pos_;
      Operand& denominator = expr.denominator.emplace();
      if (absl::Status s = ParseSide(denominator); !s.ok()) {
        return s;
      }
      if (!denominator.fleet_wide()) {
        pos_ = right;
        return Error(NotFleetWide("right"));
      }
      // Groups are matched by their labels, so the order of the lists does not matter.
      std::vector<std::string> left_by = expr.by, right_by = denominator.by;
      std::sort(left_by.begin(), left_by.end());
      std::sort(right_by.begin(), right_by.end());
      if (left_by != right_by) {
        pos_ = slash;
        return Error(absl::StrCat("the two sides of '/' group by different labels: by (",
                                  absl::StrJoin(expr.by, ", "), ") on the left, by (",
                                  absl::StrJoin(denominator.by, ", "),
                                  ") on the right; groups are matched one to one, so both sides "
                                  "need the same 'by' labels"));
      }
    }
    if (absl::Status s = ParseComparison(expr); !s.ok()) {
      return s;
    }
    SkipSpace();
    if (pos_ != text_.size()) {
      return Error(absl::StrCat("unexpected '", text_.substr(pos_), "' after the threshold"));
    }
    return expr;
  }

 private:
  static Aggregation AggregationOf(absl::string_view word) {
    if (word == "sum") {
      return Aggregation::kSum;
    }
    if (word == "avg") {
      return Aggregation::kAvg;
    }
    if (word == "min") {
      return Aggregation::kMin;
    }
    if (word == "max") {
      return Aggregation::kMax;
    }
    if (word == "count") {
      return Aggregation::kCount;
    }
    return Aggregation::kNone;
  }

  // 0.95 for "p95"; 0 for anything else (p00 is no quantile).
  static double QuantileOf(absl::string_view word) {
    if (word.size() != 3 || word[0] != 'p' || !std::isdigit(static_cast<unsigned char>(word[1])) ||
        !std::isdigit(static_cast<unsigned char>(word[2]))) {
      return 0;
    }
    return ((word[1] - '0') * 10 + (word[2] - '0')) / 100.0;
  }

  static std::string NotFleetWide(absl::string_view side) {
    return absl::StrCat(
        "the ", side,
        " side of '/' is per agent: division applies to fleet-wide values, "
        "sum|avg|min|max|count [by (...)] (...) or pNN by (...) (...) on both sides");
  }

  // One side of the comparison (or of '/'): an operand, aggregated or not.
  absl::Status ParseSide(Operand& op) {
    SkipSpace();
    const size_t start = pos_;
    std::string word = PeekWord();
    if (auto agg = AggregationOf(word); agg != Aggregation::kNone) {
      Word();
      op.aggregation = agg;
      const bool by_first = PeekWord() == "by";
      if (by_first) {
        Word();
        if (absl::Status s = ParseBy(op); !s.ok()) {
          return s;
        }
      }
      const bool parenthesized = Eat('(');
      if (absl::Status s = ParseOperand(op); !s.ok()) {
        return s;
      }
      if (parenthesized && !Eat(')')) {
        return Error("expected ')' to close the aggregation");
      }
      if (PeekWord() == "by") {
        if (by_first) {
          return Error("'by' is given twice");
        }
        Word();
        return ParseBy(op);
      }
      return absl::OkStatus();
    }
    if (const double q = QuantileOf(word); q > 0) {
      Word();
      if (PeekWord() == "by") {
        Word();
        return ParseMergedQuantile(op, q);
      }
      pos_ = start;
    }
    return ParseOperand(op);
  }

  // `pNN by (l, ...) (selector)` after its `by`: the quantile of the merged histograms.
  absl::Status ParseMergedQuantile(Operand& op, double quantile) {
    if (absl::Status s = ParseBy(op); !s.ok()) {
      return s;
    }
    if (!Eat('(')) {
      return Error("expected '(' and a histogram selector after pNN by (...)");
    }
    SkipSpace();
    const size_t start = pos_;
    std::string word = Word();
    if (word.empty()) {
      return Error("expected a histogram metric inside pNN by (...) (...)");
    }
    if ((word == "rate" || word == "irate" || QuantileOf(word) > 0) && PeekChar() == '(') {
      pos_ = start;
      return Error(
          absl::StrCat("pNN by (...) merges histograms: write the histogram's selector "
                       "itself, not ",
                       word, "(...)"));
    }
    const MetricInfo* info = FindMetric(word);
    if (info == nullptr) {
      if (absl::Status s = ScrapedOrUnknown(word, start); !s.ok()) {
        return s;
      }
      op.scraped = true;
    } else if (info->kind != MetricKind::kHistogram) {
      pos_ = start;
      return Error(absl::StrCat("'", word, "' is a gauge; quantiles apply to histograms only"));
    }
    op.aggregation = Aggregation::kQuantile;
    op.quantile = quantile;
    op.metric = word;
    if (Eat('{')) {
      if (absl::Status s = ParseMatchers(op); !s.ok()) {
        return s;
      }
    }
    if (!Eat(')')) {
      return Error("expected ')' to close pNN by (...) (...)");
    }
    return absl::OkStatus();
  }

  // A name outside the schema: OK (a scraped metric) unless a built-in collector's prefix makes
  // it a typo of a schema name. `start` is where the name begins.
  absl::Status ScrapedOrUnknown(const std::string& word, size_t start) {
    absl::string_view prefix = ReservedPrefixOf(word);
    if (prefix.empty()) {
      return absl::OkStatus();
    }
    pos_ = start;
    const MetricInfo* nearest = NearestMetric(word);
    std::vector<std::string> same_prefix;
    for (const MetricInfo& m : AllMetrics()) {
      if (absl::StartsWith(m.name, prefix)) {
        same_prefix.emplace_back(m.name);
      }
    }
    return Error(absl::StrCat(
        "unknown metric '", word, "'",
        nearest != nullptr ? absl::StrCat(": did you mean '", nearest->name, "'?") : "",
        " (the prefix '", prefix, "' belongs to a built-in collector, whose metrics are ",
        absl::StrJoin(same_prefix, ", "), "; a scraped metric needs another prefix)"));
  }

  static bool IsWordChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

  void SkipSpace() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) {
      ++pos_;
    }
  }

  std::string PeekWord() {
    SkipSpace();
    size_t end = pos_;
    while (end < text_.size() && IsWordChar(text_[end])) {
      ++end;
    }
    return std::string(text_.substr(pos_, end - pos_));
  }

  std::string Word() {
    std::string word = PeekWord();
    pos_ += word.size();
    return word;
  }

  bool Eat(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(what, " (column ", pos_ + 1, ")"));
  }

  // `(l1, l2)` after `by`; `()` is the whole fleet as one group.
  absl::Status ParseBy(Operand& expr) {
    if (!Eat('(')) {
      return Error("expected '(' after 'by'");
    }
    if (Eat(')')) {
      return absl::OkStatus();
    }
    while (true) {
      std::string label = Word();
      if (label.empty()) {
        return Error("expected a label name in 'by (...)'");
      }
      expr.by.push_back(label);
      if (Eat(')')) {
        return absl::OkStatus();
      }
      if (!Eat(',')) {
        return Error("expected ',' or ')' in 'by (...)'");
      }
    }
  }

  absl::Status ParseOperand(Operand& expr) {
    SkipSpace();
    const size_t start = pos_;
    std::string word = Word();
    if (word.empty()) {
      return Error("expected a metric name");
    }
    double quantile = 0;
    RangeFunction function = RangeFunction::kNone;
    size_t argument = start;  // where rate()'s argument begins
    if (QuantileOf(word) > 0 && PeekWord() == "by") {
      pos_ = start;
      return Error(absl::StrCat(word,
                                " by (...) is fleet-wide already (the quantile of the merged "
                                "histograms): it cannot be aggregated again"));
    }
    if (QuantileOf(word) > 0 && PeekChar() == '(') {
      quantile = QuantileOf(word);
      Eat('(');
      word = Word();
      if (word.empty()) {
        return Error(absl::StrCat("expected a histogram metric inside ", word, "(...)"));
      }
    } else if ((word == "rate" || word == "irate") && PeekChar() == '(') {
      function = word == "rate" ? RangeFunction::kRate : RangeFunction::kIrate;
      Eat('(');
      argument = pos_;
      word = Word();
      if (word.empty()) {
        return Error(
            absl::StrCat("expected a metric inside ", RangeFunctionName(function), "(...)"));
      }
    }
    const absl::string_view fn = RangeFunctionName(function);
    const MetricInfo* info = FindMetric(word);
    if (info == nullptr) {
      // A built-in collector's prefix: a typo of a schema name, never a scraped metric.
      if (absl::Status s = ScrapedOrUnknown(word, start); !s.ok()) {
        return s;
      }
      // Outside the schema: a scraped metric the agents declare; its kind is the expression's.
      expr.scraped = true;
    } else if (function != RangeFunction::kNone && info->kind == MetricKind::kHistogram) {
      pos_ = argument;
      return Error(absl::StrCat("'", word, "' is a histogram: ", fn,
                                "() applies to per-second rates; write p50/p90/p95/p99(", word,
                                ")"));
    } else if (function != RangeFunction::kNone && !IsPerSecondRate(*info)) {
      pos_ = argument;
      return Error(
          absl::StrCat("'", word, "' is a gauge, not a per-second rate: ", fn,
                       "() applies to the *_per_second metrics and scraped counters; compare '",
                       word, "' itself"));
    } else if (quantile > 0 && info->kind != MetricKind::kHistogram) {
      return Error(absl::StrCat("'", word, "' is a gauge; quantiles apply to histograms only"));
    } else if (quantile == 0 && info->kind == MetricKind::kHistogram) {
      return Error(absl::StrCat("'", word, "' is a histogram: write p50/p90/p95/p99(", word, ")"));
    }
    expr.metric = word;
    expr.quantile = quantile;
    if (Eat('{')) {
      if (absl::Status s = ParseMatchers(expr); !s.ok()) {
        return s;
      }
    }
    if (quantile > 0 && !Eat(')')) {
      return Error("expected ')' to close the quantile");
    }
    if (function != RangeFunction::kNone) {
      expr.range_function = function;
      if (absl::Status s = ParseRange(expr, argument); !s.ok()) {
        return s;
      }
      if (!Eat(')')) {
        return Error(absl::StrCat("expected ')' to close ", fn, "("));
      }
    }
    return absl::OkStatus();
  }

  // `[5m]` after a rate()/irate() selector; `start` is where the function's argument begins.
  absl::Status ParseRange(Operand& expr, size_t start) {
    const absl::string_view fn = RangeFunctionName(expr.range_function);
    const std::string written(
        absl::StripAsciiWhitespace(text_.substr(start, std::min(pos_, text_.size()) - start)));
    if (!Eat('[')) {
      return Error(absl::StrCat(fn, "(", written, ") needs a range: write ", fn, "(", written,
                                "[5m]) (at most ", absl::FormatDuration(kMaxRange), ")"));
    }
    const size_t close = text_.find(']', pos_);
    if (close == absl::string_view::npos) {
      return Error(absl::StrCat("unterminated range in ", fn, "(", written, "[...]"));
    }
    const absl::string_view range = absl::StripAsciiWhitespace(text_.substr(pos_, close - pos_));
    const std::string offending = absl::StrCat(fn, "(", written, "[", range, "])");
    if (range.empty()) {
      return Error(absl::StrCat("empty range in ", offending, ": write e.g. [5m]"));
    }
    const bool negative = range.front() == '-';
    absl::StatusOr<absl::Duration> d = ParseDurationText(negative ? range.substr(1) : range);
    if (!d.ok()) {
      return Error(absl::StrCat("range '", range, "' of ", offending,
                                " is not a duration (write e.g. 30s, 5m)"));
    }
    if (negative || *d <= absl::ZeroDuration()) {
      return Error(absl::StrCat("range '", range, "' of ", offending, " must be more than 0"));
    }
    if (*d > kMaxRange) {
      return Error(absl::StrCat("range '", range, "' of ", offending, " is above ",
                                absl::FormatDuration(kMaxRange),
                                ", the most the controller keeps"));
    }
    expr.range = *d;
    pos_ = close + 1;
    return absl::OkStatus();
  }

  char PeekChar() {
    SkipSpace();
    return pos_ < text_.size() ? text_[pos_] : '\0';
  }

  absl::Status ParseMatchers(Operand& expr) {
    if (Eat('}')) {
      return absl::OkStatus();
    }
    while (true) {
      LabelMatcher m;
      m.label = Word();
      if (m.label.empty()) {
        return Error("expected a label name in '{...}'");
      }
      SkipSpace();
      absl::string_view rest = text_.substr(pos_);
      if (absl::StartsWith(rest, "=~")) {
        m.op = LabelMatcher::Op::kRegex;
        pos_ += 2;
      } else if (absl::StartsWith(rest, "!~")) {
        m.op = LabelMatcher::Op::kNotRegex;
        pos_ += 2;
      } else if (absl::StartsWith(rest, "!=")) {
        m.op = LabelMatcher::Op::kNotEqual;
        pos_ += 2;
      } else if (absl::StartsWith(rest, "=")) {
        m.op = LabelMatcher::Op::kEqual;
        pos_ += 1;
      } else {
        return Error(absl::StrCat("expected =, !=, =~ or !~ after label '", m.label, "'"));
      }
      if (!Eat('"')) {
        return Error(absl::StrCat("expected a quoted value for label '", m.label, "'"));
      }
      const size_t close = text_.find('"', pos_);
      if (close == absl::string_view::npos) {
        return Error("unterminated label value");
      }
      m.value = std::string(text_.substr(pos_, close - pos_));
      pos_ = close + 1;
      if (m.op == LabelMatcher::Op::kRegex || m.op == LabelMatcher::Op::kNotRegex) {
        auto regex =
            std::make_shared<re2::RE2>(absl::StrCat("^(?:", m.value, ")$"), re2::RE2::Quiet);
        if (!regex->ok()) {
          return Error(absl::StrCat("bad regular expression '", m.value, "': ", regex->error()));
        }
        m.regex = std::move(regex);
      }
      expr.matchers.push_back(std::move(m));
      if (Eat('}')) {
        return absl::OkStatus();
      }
      if (!Eat(',')) {
        return Error("expected ',' or '}' in the label matchers");
      }
    }
  }

  absl::Status ParseComparison(Expression& expr) {
    SkipSpace();
    absl::string_view rest = text_.substr(pos_);
    struct {
      absl::string_view text;
      Comparison op;
    } const kOps[] = {{">=", Comparison::kGreaterEqual}, {"<=", Comparison::kLessEqual},
                      {"==", Comparison::kEqual},        {"!=", Comparison::kNotEqual},
                      {">", Comparison::kGreater},       {"<", Comparison::kLess}};
    bool found = false;
    for (const auto& candidate : kOps) {
      if (absl::StartsWith(rest, candidate.text)) {
        expr.op = candidate.op;
        pos_ += candidate.text.size();
        found = true;
        break;
      }
    }
    if (!found) {
      return Error(absl::StrCat("expected a comparison (>, >=, <, <=, ==, !=), found '",
                                rest.empty() ? "end of expression" : rest.substr(0, 8), "'"));
    }
    SkipSpace();
    size_t end = pos_;
    while (end < text_.size() && !std::isspace(static_cast<unsigned char>(text_[end]))) {
      ++end;
    }
    absl::string_view number = text_.substr(pos_, end - pos_);
    if (!absl::SimpleAtod(number, &expr.threshold) || !std::isfinite(expr.threshold)) {
      return Error(absl::StrCat("threshold '", number, "' is not a number"));
    }
    pos_ = end;
    return absl::OkStatus();
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

absl::StatusOr<v1::Severity> ParseSeverity(absl::string_view text) {
  const std::string upper = absl::AsciiStrToUpper(text);
  if (upper == "SEV1") {
    return v1::SEV1;
  }
  if (upper == "SEV2") {
    return v1::SEV2;
  }
  if (upper == "SEV3") {
    return v1::SEV3;
  }
  if (upper == "SEV4") {
    return v1::SEV4;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("severity '", text, "' is not one of SEV1, SEV2, SEV3, SEV4"));
}

// Parses one entry of `rules:`; errors are prefixed with the entry's position and name.
// A value of the right type for `type`, standing in for a cell reference while the literal
// parameters are checked against the action's schema.
std::string StandIn(const ParamSpec& spec) {
  switch (spec.type) {
    case ParamType::kInteger:
      return "1";
    case ParamType::kDuration:
      return "1m";
    case ParamType::kEnum:
      return std::string(spec.enum_values.substr(0, spec.enum_values.find('|')));
    case ParamType::kString:
      break;
  }
  return "x";
}

// True when the rule collects `table`: a requested name selects a table or a family of them
// ("top_processes" selects "top_processes_memory"), as on the agent.
bool RuleCollects(const Rule& rule, absl::string_view table) {
  for (const std::string& requested : rule.diagnostics) {
    if (table == requested ||
        (absl::StartsWith(table, requested) && table.size() > requested.size() &&
         table[requested.size()] == '_')) {
      return true;
    }
  }
  return false;
}

absl::Status ParseSuggestions(const YAML::Node& list, absl::string_view file, Rule& rule) {
  if (!list.IsDefined() || list.IsNull()) {
    return absl::OkStatus();
  }
  auto fail = [&](const YAML::Node& at, absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, at), ": rule ", rule.name, ": suggest: ", what));
  };
  if (!list.IsSequence()) {
    return fail(list, "must be a list of {action, params}");
  }
  if (list.size() > kMaxSuggestionsPerRule) {
    return fail(list, absl::StrCat("at most ", kMaxSuggestionsPerRule, " suggestions per rule"));
  }
  for (const YAML::Node& item : list) {
    if (absl::Status s = YamlCheckKeys(item, file, absl::StrCat("rule ", rule.name, " suggest"),
                                       {"action", "params"});
        !s.ok()) {
      return s;
    }
    SuggestTemplate suggestion;
    suggestion.source = YamlWhere(file, item);
    auto action = YamlString(item, "action", file, /*required=*/true);
    if (!action.ok()) {
      return fail(item, action.status().message());
    }
    suggestion.action = *action;
    const ActionSpec* spec = FindAction(suggestion.action);
    if (spec == nullptr) {
      std::vector<std::string> names;
      for (const ActionSpec& a : AllActions()) {
        names.emplace_back(a.name);
      }
      return fail(item["action"], absl::StrCat("unknown action '", suggestion.action,
                                               "' (actions: ", absl::StrJoin(names, ", "), ")"));
    }
    std::map<std::string, std::string> checked;
    const YAML::Node params = item["params"];
    if (params.IsDefined() && !params.IsNull() && !params.IsMap()) {
      return fail(params, "params must be a map of parameter to value");
    }
    if (params.IsDefined() && params.IsMap()) {
      for (const auto& kv : params) {
        absl::StatusOr<std::string> key = YamlKey(kv.first, file, "params");
        if (!key.ok()) {
          return key.status();
        }
        if (!kv.second.IsScalar()) {
          return fail(kv.second, absl::StrCat("params.", *key, " must be a single value"));
        }
        const std::string value = kv.second.as<std::string>();
        const ParamSpec* param = nullptr;
        for (const ParamSpec& p : spec->params) {
          if (p.name == *key) {
            param = &p;
          }
        }
        std::optional<CellReference> cell = ParseCellReference(value);
        if (param != nullptr && cell.has_value()) {
          if (!RuleCollects(rule, cell->table)) {
            return fail(kv.second,
                        absl::StrCat("params.", *key, " reads table '", cell->table,
                                     "', which the rule does not collect (diagnostics: [",
                                     absl::StrJoin(rule.diagnostics, ", "), "])"));
          }
          checked[*key] = StandIn(*param);
        } else {
          checked[*key] = value;  // an unknown parameter is named by the schema check below
        }
        suggestion.params.emplace_back(*key, value);
      }
    }
    // The schema's own checks: unknown, missing and ill-typed parameters.
    if (absl::Status s = CheckActionParams(suggestion.action, checked); !s.ok()) {
      return fail(item, s.message());
    }
    rule.suggest.push_back(std::move(suggestion));
  }
  return absl::OkStatus();
}

// `labels:`, extra labels for the rule's alerts (notification routing reads them).
absl::Status ParseLabels(const YAML::Node& map, absl::string_view file, Rule& rule) {
  if (!map.IsDefined() || map.IsNull()) {
    return absl::OkStatus();
  }
  auto fail = [&](const YAML::Node& at, absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, at), ": rule ", rule.name, ": labels: ", what));
  };
  if (!map.IsMap()) {
    return fail(map, "must be a map of label name to value");
  }
  for (const auto& kv : map) {
    absl::StatusOr<std::string> key = YamlKey(kv.first, file, "labels");
    if (!key.ok()) {
      return key.status();
    }
    if (!RE2::FullMatch(*key, "[A-Za-z_][A-Za-z0-9_]*")) {
      return fail(kv.first, absl::StrCat("label name '", *key,
                                         "' must be letters, digits and _ (not starting with a "
                                         "digit)"));
    }
    // The alert's own fields and the engine's labels are not the rule's to set.
    if (*key == "severity" || *key == "alertname" || *key == "stale_reason" ||
        *key == "resolved_reason") {
      return fail(kv.first, absl::StrCat("'", *key, "' is set by Vigil",
                                         *key == "severity" ? " (use the rule's severity:)" : ""));
    }
    if (!kv.second.IsScalar()) {
      return fail(kv.second, absl::StrCat("labels.", *key, " must be a single value"));
    }
    rule.labels[*key] = kv.second.as<std::string>();
  }
  return absl::OkStatus();
}

absl::StatusOr<Rule> ParseRule(const YAML::Node& node, absl::string_view file) {
  const std::string where = YamlWhere(file, node);
  if (!node.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": a rule must be a map"));
  }
  Rule rule;
  rule.source = where;
  auto name = YamlString(node, "alert", file, /*required=*/true);
  if (!name.ok()) {
    return name.status();
  }
  rule.name = *name;
  auto fail = [&](const YAML::Node& at, absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, at.IsDefined() ? at : node),
                                                   ": rule ", rule.name, ": ", what));
  };
  if (rule.name.empty() || !RE2::FullMatch(rule.name, "[A-Za-z_][A-Za-z0-9_]*")) {
    return fail(node["alert"], absl::StrCat("alert name '", rule.name,
                                            "' must be letters, digits and _ (like a metric)"));
  }
  if (absl::Status s = YamlCheckKeys(node, file, absl::StrCat("rule ", rule.name),
                                     {"alert", "expr", "for", "window", "severity", "tiers",
                                      "summary", "runbook", "labels", "diagnostics", "suggest"});
      !s.ok()) {
    return s;
  }
  auto expr_text = YamlString(node, "expr", file, /*required=*/true);
  if (!expr_text.ok()) {
    return fail(node, expr_text.status().message());
  }
  auto expr = ParseExpression(*expr_text);
  if (!expr.ok()) {
    return fail(node["expr"], absl::StrCat("expr: ", expr.status().message()));
  }
  rule.expr = std::move(*expr);
  auto for_duration = YamlDuration(node, "for", file, absl::ZeroDuration());
  if (!for_duration.ok()) {
    return fail(node["for"], for_duration.status().message());
  }
  rule.for_duration = *for_duration;
  auto window = YamlDuration(node, "window", file, absl::Minutes(1));
  if (!window.ok()) {
    return fail(node["window"], window.status().message());
  }
  if (*window < absl::Seconds(1) || *window > absl::Minutes(5)) {
    return fail(node["window"], "window must be between 1s and 5m");
  }
  rule.window = *window;
  if (rule.for_duration < absl::ZeroDuration()) {
    return fail(node["for"], "for must not be negative");
  }
  auto severity = YamlString(node, "severity", file, false, "SEV3");
  if (!severity.ok()) {
    return severity.status();
  }
  auto parsed_severity = ParseSeverity(*severity);
  if (!parsed_severity.ok()) {
    return fail(node["severity"], parsed_severity.status().message());
  }
  rule.severity = *parsed_severity;
  if (const YAML::Node tiers = node["tiers"]; tiers.IsDefined()) {
    if (!tiers.IsSequence()) {
      return fail(tiers, "tiers must be a list of {threshold, severity}");
    }
    for (const YAML::Node& t : tiers) {
      if (absl::Status s = YamlCheckKeys(t, file, "a tier", {"threshold", "severity"}); !s.ok()) {
        return s;
      }
      auto threshold = YamlDouble(t, "threshold", file, NAN);
      auto tier_severity = YamlString(t, "severity", file, /*required=*/true);
      if (!threshold.ok() || std::isnan(*threshold)) {
        return fail(t, "a tier needs a numeric threshold");
      }
      if (!tier_severity.ok()) {
        return fail(t, "a tier needs a severity");
      }
      auto s = ParseSeverity(*tier_severity);
      if (!s.ok()) {
        return fail(t, s.status().message());
      }
      if (!Compare(*threshold, rule.expr.op, rule.expr.threshold)) {
        return fail(t,
                    absl::StrCat("tier threshold ", *threshold, " does not meet the rule's own (",
                                 ComparisonText(rule.expr.op), " ", rule.expr.threshold, ")"));
      }
      rule.tiers.push_back({*threshold, *s});
    }
    // Most severe first, so the first tier a value meets is the one that counts.
    std::sort(rule.tiers.begin(), rule.tiers.end(),
              [](const SeverityTier& a, const SeverityTier& b) { return a.severity < b.severity; });
  }
  for (absl::string_view key : {"summary", "runbook"}) {
    auto value = YamlString(node, key, file);
    if (!value.ok()) {
      return value.status();
    }
    (key == "summary" ? rule.summary : rule.runbook) = *value;
  }
  if (absl::Status s = ParseLabels(node["labels"], file, rule); !s.ok()) {
    return s;
  }
  auto diagnostics = YamlStringList(node, "diagnostics", file);
  if (!diagnostics.ok()) {
    return diagnostics.status();
  }
  rule.diagnostics = std::move(*diagnostics);
  if (absl::Status s = ParseSuggestions(node["suggest"], file, rule); !s.ok()) {
    return s;
  }
  if (rule.summary.empty()) {
    rule.summary = absl::StrCat(rule.name, ": ", rule.expr.text);
  }
  return rule;
}

}  // namespace

bool LabelMatcher::Matches(absl::string_view actual) const {
  switch (op) {
    case Op::kEqual:
      return actual == value;
    case Op::kNotEqual:
      return actual != value;
    case Op::kRegex:
      return RE2::FullMatch(re2::StringPiece(actual.data(), actual.size()), *regex);
    case Op::kNotRegex:
      return !RE2::FullMatch(re2::StringPiece(actual.data(), actual.size()), *regex);
  }
  return false;
}

bool Compare(double value, Comparison op, double threshold) {
  switch (op) {
    case Comparison::kGreater:
      return value > threshold;
    case Comparison::kGreaterEqual:
      return value >= threshold;
    case Comparison::kLess:
      return value < threshold;
    case Comparison::kLessEqual:
      return value <= threshold;
    case Comparison::kEqual:
      return value == threshold;
    case Comparison::kNotEqual:
      return value != threshold;
  }
  return false;
}

absl::string_view ComparisonText(Comparison op) {
  switch (op) {
    case Comparison::kGreater:
      return ">";
    case Comparison::kGreaterEqual:
      return ">=";
    case Comparison::kLess:
      return "<";
    case Comparison::kLessEqual:
      return "<=";
    case Comparison::kEqual:
      return "==";
    case Comparison::kNotEqual:
      return "!=";
  }
  return "?";
}

std::optional<CellReference> ParseCellReference(absl::string_view value) {
  static const LazyRE2 kCell = {R"(\{([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\})"};
  CellReference cell;
  if (!RE2::FullMatch(re2::StringPiece(value.data(), value.size()), *kCell, &cell.table,
                      &cell.column)) {
    return std::nullopt;
  }
  return cell;
}

absl::string_view RangeFunctionName(RangeFunction f) {
  switch (f) {
    case RangeFunction::kRate:
      return "rate";
    case RangeFunction::kIrate:
      return "irate";
    case RangeFunction::kNone:
      break;
  }
  return "";
}

std::vector<const Operand*> Expression::operands() const {
  std::vector<const Operand*> out = {&numerator()};
  if (denominator.has_value()) {
    out.push_back(&*denominator);
  }
  return out;
}

absl::StatusOr<Expression> ParseExpression(absl::string_view text) {
  return ExprParser(text).Parse();
}

std::vector<std::string> KindMismatches(const std::vector<Rule>& rules,
                                        const std::vector<v1::MetricDeclaration>& declared) {
  std::vector<std::string> out;
  for (const Rule& rule : rules) {
    for (const Operand* operand : rule.expr.operands()) {
      if (!operand->scraped) {
        continue;
      }
      const bool wants_histogram = operand->quantile > 0;
      const bool wants_rate = operand->range_function != RangeFunction::kNone;
      for (const v1::MetricDeclaration& d : declared) {
        if (d.name() != operand->metric) {
          continue;
        }
        const bool is_histogram = d.kind() == v1::MetricDeclaration::HISTOGRAM;
        if (is_histogram != wants_histogram) {
          out.push_back(absl::StrCat(
              "rule ", rule.name, " (", rule.source, ") uses '", operand->metric, "' as a ",
              wants_histogram ? "histogram" : (wants_rate ? "per-second rate" : "gauge"),
              " but collector '", d.collector(), "' declares it a ",
              is_histogram ? "histogram" : "gauge", ": the rule never fires"));
        } else if (wants_rate && !d.per_second_rate()) {
          out.push_back(absl::StrCat(
              "rule ", rule.name, " (", rule.source, ") uses '", operand->metric, "' under ",
              RangeFunctionName(operand->range_function), "() but collector '", d.collector(),
              "' declares it a gauge that is not a per-second rate: the rule never fires"));
        }
        break;
      }
    }
  }
  return out;
}

std::vector<std::string> UndeclaredScrapedMetrics(
    const std::vector<Rule>& rules, const std::vector<v1::MetricDeclaration>& declared) {
  std::vector<std::string> out;
  for (const Rule& rule : rules) {
    for (const Operand* operand : rule.expr.operands()) {
      if (!operand->scraped) {
        continue;
      }
      const bool found = std::any_of(declared.begin(), declared.end(),
                                     [&](const auto& d) { return d.name() == operand->metric; });
      if (!found) {
        out.push_back(absl::StrCat("rule ", rule.name, " (", rule.source, "): metric '",
                                   operand->metric, "' is declared by no connected agent"));
      }
    }
  }
  return out;
}

v1::Severity Rule::SeverityFor(double value) const {
  for (const SeverityTier& tier : tiers) {
    if (Compare(value, expr.op, tier.threshold)) {
      return tier.severity < severity ? tier.severity : severity;
    }
  }
  return severity;
}

namespace {

RuleFile ParseRulesOrThrow(absl::string_view text, absl::string_view name) {
  RuleFile result;
  absl::StatusOr<YAML::Node> root = LoadYamlString(text, name);
  if (!root.ok()) {
    result.errors.emplace_back(root.status().message());
    return result;
  }
  // A Prometheus rule file (`groups:`, or a bare list of `- alert:`), read in its own terms.
  if (IsPrometheusRuleFile(*root)) {
    return ParsePrometheusRules(*root, text, name);
  }
  if (absl::Status s = YamlCheckKeys(*root, name, "the rule file", {"rules"}); !s.ok()) {
    result.errors.emplace_back(s.message());
    return result;
  }
  const YAML::Node rules = (*root)["rules"];
  if (!rules.IsDefined() || !rules.IsSequence()) {
    result.errors.push_back(
        absl::StrCat(YamlWhere(name, *root), ": the rule file needs a 'rules:' list"));
    return result;
  }
  std::map<std::string, std::string> seen;  // name -> where
  for (const YAML::Node& node : rules) {
    absl::StatusOr<Rule> rule = absl::InternalError("not parsed");
    try {
      rule = ParseRule(node, name);
    } catch (...) {
      rule = YamlExceptionStatus(name);
    }
    if (!rule.ok()) {
      result.errors.emplace_back(rule.status().message());
      continue;
    }
    auto [it, inserted] = seen.emplace(rule->name, rule->source);
    if (!inserted) {
      result.errors.push_back(absl::StrCat(rule->source, ": rule ", rule->name,
                                           ": duplicate name (first defined at ", it->second, ")"));
      continue;
    }
    for (const Operand* operand : rule->expr.operands()) {
      if (operand->scraped) {
        result.notes.push_back(absl::StrCat(
            rule->source, ": rule ", rule->name, ": metric '", operand->metric,
            "' is scraped (declared by agents), not in the built-in schema; used as a ",
            operand->quantile > 0                             ? "histogram"
            : operand->range_function != RangeFunction::kNone ? "per-second rate (a counter)"
                                                              : "gauge"));
      }
    }
    result.rules.push_back(std::move(*rule));
  }
  return result;
}

}  // namespace

RuleFile ParseRules(absl::string_view text, absl::string_view name) {
  try {
    return ParseRulesOrThrow(text, name);
  } catch (...) {
    RuleFile result;
    result.errors.emplace_back(YamlExceptionStatus(name).message());
    return result;
  }
}

RuleFile LoadRuleFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadConfigFile(path);
  if (!text.ok()) {
    RuleFile result;
    result.errors.emplace_back(text.status().message());
    return result;
  }
  return ParseRules(*text, path);
}

const std::string& DefaultRulesYaml() {
  // From the runbooks. Thresholds are the runbooks'; `for:` keeps one slow scrape from paging.
  static const std::string* const kRules = new std::string(R"yaml(rules:
  - alert: HighAPILatency
    expr: p95(nginx_request_duration_seconds) > 2
    for: 5m
    window: 1m
    severity: SEV2
    summary: API p95 latency above 2 s
    runbook: high-api-latency
    diagnostics: [nginx_slow_endpoints, top_processes, pg_active_queries, pg_lock_waits, redis_stats]
    suggest:
      - {action: restart_service, params: {unit: "{top_processes_cpu.unit}"}}
  - alert: HighErrorRate
    expr: nginx_error_ratio > 0.05
    for: 5m
    severity: SEV2
    summary: More than 5 % of API responses are 5xx
    runbook: high-error-rate
    diagnostics: [nginx_slow_endpoints, top_processes, pg_active_queries, app_log_last_errors, app_log_top_modules]
  - alert: HighMemoryUsage
    expr: host_memory_used_ratio > 0.85
    for: 5m
    severity: SEV2
    summary: Memory above 85 %
    runbook: high-memory-usage
    diagnostics: [top_processes, meminfo]
    suggest:
      - {action: restart_service, params: {unit: "{top_processes_memory.unit}"}}
  - alert: DiskSpaceWarning
    expr: host_disk_used_ratio > 0.80
    for: 5m
    severity: SEV3
    tiers: [{threshold: 0.95, severity: SEV1}]
    summary: Disk above 80 % (SEV1 above 95 %)
    runbook: disk-space
    diagnostics: [top_processes, disk_usage_top]
    suggest:
      - {action: logrotate}
      - {action: clean_old_logs,
         params: {dir: /var/log, pattern: "*.gz", older_than: 30d, recursive: "yes"}}
      - {action: clean_old_logs,
         params: {dir: /var/backups/azalscore, pattern: "*.sql.gz", older_than: 30d,
                  recursive: "yes"}}
  - alert: HighCPU
    expr: host_cpu_usage_ratio > 0.90
    for: 5m
    severity: SEV3
    summary: CPU above 90 %
    runbook: high-cpu
    diagnostics: [top_processes]
  - alert: DBConnectionsExhausted
    expr: pg_connections_used_ratio > 0.95
    for: 1m
    severity: SEV2
    summary: PostgreSQL connections above 95 % of max_connections
    runbook: db-connections
    diagnostics: [pg_active_queries, pg_lock_waits, pg_connections_by_state]
  - alert: SlowQueries
    expr: pg_longest_query_seconds > 30
    for: 1m
    severity: SEV3
    summary: A PostgreSQL query has been running for more than 30 s
    runbook: slow-queries
    diagnostics: [pg_active_queries, pg_lock_waits, top_processes, pg_top_statements]
    suggest:
      - {action: pg_terminate_backend, params: {pid: "{pg_lock_waits.blocking_pid}"}}
      - {action: pg_cancel_backend, params: {pid: "{pg_active_queries.pid}"}}
  - alert: BlockedQueries
    expr: pg_blocked_queries > 0
    for: 1m
    severity: SEV3
    summary: PostgreSQL queries waiting on locks
    runbook: slow-queries
    diagnostics: [pg_lock_waits, pg_active_queries]
    suggest:
      - {action: pg_terminate_backend, params: {pid: "{pg_lock_waits.blocking_pid}"}}
  - alert: LowCacheHitRatio
    expr: redis_keyspace_hit_ratio < 0.8
    for: 10m
    severity: SEV3
    summary: Redis keyspace hit ratio below 80 %
    runbook: low-cache-hit-ratio
    diagnostics: [redis_stats, redis_memory, redis_ttl_sample]
    suggest:
      - {action: redis_config_set, params: {parameter: maxmemory-policy, value: allkeys-lru}}
      - {action: redis_flushdb, params: {db: 0}}
  - alert: LowThroughput
    # The runbook's sum(rate(http_requests_total[5m])) < 100: the fleet's 5-minute mean, so
    # one quiet round does not start the wait and bursts do not hide a low average.
    expr: sum(rate(nginx_requests_per_second[5m])) < 100
    for: 5m
    severity: SEV3
    summary: Fleet-wide API throughput below 100 req/s
    runbook: low-throughput
    diagnostics: [nginx_slow_endpoints]
  - alert: AppLogErrorBurst
    expr: app_log_errors_per_second > 1
    for: 5m
    severity: SEV3
    summary: The application logs more than one error per second in one module
    runbook: high-error-rate
    diagnostics: [app_log_last_errors, app_log_top_modules, nginx_slow_endpoints]
  - alert: HealthProbeFailing
    expr: http_probe_up < 1
    for: 1m
    severity: SEV2
    summary: A health probe fails (the 502 check, curl -I /health)
    runbook: high-error-rate
    diagnostics: [http_probe_failures, nginx_status, nginx_slow_endpoints, top_processes]
)yaml");
  return *kRules;
}

absl::Duration HistogramWindowFor(const std::vector<Rule>& rules) {
  absl::Duration longest = kMinHistogramWindow;
  for (const Rule& rule : rules) {
    for (const Operand* operand : rule.expr.operands()) {
      if (operand->quantile > 0) {
        longest = std::max(longest, rule.window);
      }
    }
  }
  return longest;
}

std::vector<Rule> DefaultRules() {
  RuleFile file = ParseRules(DefaultRulesYaml(), "built-in rules");
  // The defaults are tested; a broken default is a build defect, not a user error.
  if (!file.errors.empty()) {
    std::abort();
  }
  return std::move(file.rules);
}

}  // namespace vigil::controller
