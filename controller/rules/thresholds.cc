#include "controller/rules/thresholds.h"

#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/metric_schema.h"

namespace vigil::controller {
namespace {

v1::WatchThreshold::Comparison ToWire(Comparison op) {
  switch (op) {
    case Comparison::kGreater:
      return v1::WatchThreshold::GREATER;
    case Comparison::kGreaterEqual:
      return v1::WatchThreshold::GREATER_EQUAL;
    case Comparison::kLess:
      return v1::WatchThreshold::LESS;
    case Comparison::kLessEqual:
      return v1::WatchThreshold::LESS_EQUAL;
    case Comparison::kEqual:
      return v1::WatchThreshold::EQUAL;
    case Comparison::kNotEqual:
      return v1::WatchThreshold::NOT_EQUAL;
  }
  return v1::WatchThreshold::COMPARISON_UNSPECIFIED;
}

v1::WatchMatcher::Op ToWire(LabelMatcher::Op op) {
  switch (op) {
    case LabelMatcher::Op::kEqual:
      return v1::WatchMatcher::EQUAL;
    case LabelMatcher::Op::kNotEqual:
      return v1::WatchMatcher::NOT_EQUAL;
    case LabelMatcher::Op::kRegex:
      return v1::WatchMatcher::REGEX;
    case LabelMatcher::Op::kNotRegex:
      return v1::WatchMatcher::NOT_REGEX;
  }
  return v1::WatchMatcher::OP_UNSPECIFIED;
}

// Identifies a threshold regardless of the rule it came from, so identical ones go once.
std::string Key(const v1::WatchThreshold& t) {
  std::string key = absl::StrCat(t.metric().size(), ":", t.metric(), "|", t.comparison(), "|",
                                 t.threshold(), "|");
  for (const v1::WatchMatcher& m : t.matchers()) {
    absl::StrAppend(&key, m.label().size(), ":", m.label(), m.op(), m.value().size(), ":",
                    m.value(), "|");
  }
  return key;
}

}  // namespace

std::string WhyNotWatched(const Rule& rule) {
  const Expression& e = rule.expr;
  if (e.aggregation != Aggregation::kNone) {
    return "fleet-wide (an aggregate across agents is judged on the controller)";
  }
  if (e.quantile > 0) {
    return "a histogram quantile over the rule's window";
  }
  if (e.range_function != RangeFunction::kNone) {
    return absl::StrCat(RangeFunctionName(e.range_function), "() over ",
                        absl::FormatDuration(e.range), " (judged on the controller)");
  }
  const MetricInfo* info = FindMetric(e.metric);
  if (info == nullptr) {
    return absl::StrCat("'", e.metric, "' is not a gauge of the schema");
  }
  if (info->kind != MetricKind::kGauge) {
    return absl::StrCat("'", e.metric, "' is not a gauge");
  }
  if (!std::isfinite(e.threshold)) {
    return "the threshold is not a finite number";
  }
  return "";
}

WatchDerivation DeriveWatchThresholds(const std::vector<Rule>& rules) {
  WatchDerivation out;
  absl::flat_hash_set<std::string> seen;
  for (const Rule& rule : rules) {
    if (std::string why = WhyNotWatched(rule); !why.empty()) {
      out.unwatched.push_back(absl::StrCat(rule.name, ": ", why));
      continue;
    }
    v1::WatchThreshold base;
    base.set_metric(rule.expr.metric);
    for (const LabelMatcher& m : rule.expr.matchers) {
      v1::WatchMatcher* w = base.add_matchers();
      w->set_label(m.label);
      w->set_op(ToWire(m.op));
      w->set_value(m.value);
    }
    base.set_comparison(ToWire(rule.expr.op));
    base.set_rule(rule.name);
    // The condition itself, then each stricter tier: crossing one raises the severity.
    std::vector<double> thresholds = {rule.expr.threshold};
    for (const SeverityTier& tier : rule.tiers) {
      if (std::isfinite(tier.threshold)) {
        thresholds.push_back(tier.threshold);
      }
    }
    std::vector<v1::WatchThreshold> fresh;
    for (double threshold : thresholds) {
      v1::WatchThreshold t = base;
      t.set_threshold(threshold);
      if (!seen.contains(Key(t))) {
        fresh.push_back(std::move(t));
      }
    }
    // A rule is watched whole or not at all.
    if (out.message.thresholds_size() + fresh.size() > kMaxWatchThresholds) {
      out.unwatched.push_back(absl::StrCat(rule.name, ": over the limit of ", kMaxWatchThresholds,
                                           " thresholds per agent"));
      continue;
    }
    for (v1::WatchThreshold& t : fresh) {
      if (seen.insert(Key(t)).second) {
        *out.message.add_thresholds() = std::move(t);
      }
    }
    out.watched.push_back(rule.name);
  }
  return out;
}

}  // namespace vigil::controller
