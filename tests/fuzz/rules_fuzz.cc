// Fuzzes the rule file and the expression language (controller/rules/rule.h): the input is parsed
// as a rule file (Vigil's or Prometheus's), as one expression and as PromQL. Every parsed rule is
// exercised a little (its matchers and severity tiers), and a rule file either yields rules or says
// why not.
#include <cstddef>
#include <cstdint>
#include <limits>

#include "absl/strings/string_view.h"
#include "controller/rules/prometheus_rules.h"
#include "controller/rules/rule.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);

  vigil::controller::RuleFile file = vigil::controller::ParseRules(text, "fuzz.yaml");
  for (const std::string& error : file.errors) {
    FUZZ_CHECK(!error.empty());
  }
  for (const vigil::controller::Rule& rule : file.rules) {
    FUZZ_CHECK(!rule.name.empty());
    FUZZ_CHECK(!rule.expr.metric.empty());
    // rate()/irate() always carry a range within what the controller keeps; others none.
    if (rule.expr.range_function != vigil::controller::RangeFunction::kNone) {
      FUZZ_CHECK(rule.expr.range > absl::ZeroDuration());
      FUZZ_CHECK(rule.expr.range <= vigil::controller::kMaxRange);
      FUZZ_CHECK(rule.expr.quantile == 0);
    } else {
      FUZZ_CHECK(rule.expr.range == absl::ZeroDuration());
    }
    for (double v : {0.0, rule.expr.threshold, std::numeric_limits<double>::infinity()}) {
      (void)rule.SeverityFor(v);
    }
    for (const vigil::controller::LabelMatcher& m : rule.expr.matchers) {
      (void)m.Matches("");
      (void)m.Matches(m.value);
    }
  }

  auto expr = vigil::controller::ParseExpression(text);
  if (expr.ok()) {
    FUZZ_CHECK(!expr->metric.empty());
    for (const vigil::controller::LabelMatcher& m : expr->matchers) {
      (void)m.Matches("api");
    }
    // A division's sides are both fleet-wide; a merged quantile is always a quantile.
    for (const vigil::controller::Operand* operand : expr->operands()) {
      FUZZ_CHECK(!operand->metric.empty());
      FUZZ_CHECK(operand->aggregation != vigil::controller::Aggregation::kQuantile ||
                 operand->quantile > 0);
      FUZZ_CHECK(!expr->denominator.has_value() || operand->fleet_wide());
    }
  } else {
    FUZZ_CHECK(!expr.status().message().empty());
  }
  // A translation maps every byte back into the PromQL; an error points inside it.
  vigil::controller::PromTranslation promql =
      vigil::controller::TranslatePromQL(text, vigil::controller::DefaultPromNameMap());
  if (promql.status.ok()) {
    FUZZ_CHECK(promql.offsets.size() == promql.vigil.size());
    for (size_t offset : promql.offsets) {
      FUZZ_CHECK(offset < size);
    }
  } else {
    FUZZ_CHECK(promql.error_offset <= size);
  }
  return 0;
}
