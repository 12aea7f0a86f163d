// Fuzzes the Prometheus text-format parser (agent/collectors/prometheus_text.h) and the
// conversion of a target's scrapes (agent/collectors/prometheus_collector.h): the input is
// parsed whole, then converted twice as two rounds of a target whose allow-list names the
// families the corpus uses, so rates and bucket deltas run on hostile numbers too.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "agent/collectors/prometheus_collector.h"
#include "agent/collectors/prometheus_text.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using vigil::agent::Collection;
using vigil::agent::PromFamilyRule;
using vigil::agent::PromParseLimits;
using vigil::agent::PromParseResult;
using vigil::agent::PromTargetConverter;
using vigil::agent::PromTargetOptions;
using vigil::agent::PromType;

const PromTargetOptions& Target() {
  static const PromTargetOptions* const target = [] {
    auto* t = new PromTargetOptions;
    t->name = "fuzz";
    t->max_series = 64;
    auto add = [t](const char* family, PromType type, bool all_labels) {
      t->families.emplace(family, PromFamilyRule{.family = family, .type = type,
                                                 .all_labels = all_labels, .labels = {"code"},
                                                 .metric = std::string("app_") + family});
    };
    add("http_requests_total", PromType::kCounter, false);
    add("http_request_duration_seconds", PromType::kHistogram, true);
    add("queue_depth", PromType::kGauge, true);
    add("x", PromType::kUntyped, true);
    return t;
  }();
  return *target;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  PromParseLimits limits;
  limits.max_samples = 10'000;
  const PromParseResult r = vigil::agent::ParsePrometheusFamilies(input, limits);
  FUZZ_CHECK(r.summary.errors.size() <= limits.max_errors);
  FUZZ_CHECK(r.summary.errors.size() <= r.summary.error_count);
  size_t samples = 0;
  for (const auto& family : r.families) {
    FUZZ_CHECK(vigil::agent::IsPromMetricName(family.name));
    for (const auto& s : family.samples) {
      FUZZ_CHECK(vigil::agent::IsPromMetricName(s.name));
      FUZZ_CHECK(s.labels.size() <= limits.max_labels);
      for (const auto& [k, v] : s.labels) {
        FUZZ_CHECK(vigil::agent::IsPromLabelName(k));
      }
      ++samples;
    }
  }
  FUZZ_CHECK(samples <= limits.max_samples);

  PromTargetConverter converter(&Target());
  for (int round = 0; round < 2; ++round) {
    Collection out;
    const auto stats = converter.Convert(input, absl::FromUnixSeconds(1000 + round), out);
    FUZZ_CHECK(stats.series <= Target().max_series);
    FUZZ_CHECK(out.gauges.size() + out.histograms.size() <= Target().max_series);
    for (const auto& g : out.gauges) {
      FUZZ_CHECK(std::isfinite(g.value));
      FUZZ_CHECK(g.labels.count("target") == 1);
    }
    for (const auto& h : out.histograms) {
      FUZZ_CHECK(h.histogram.count() > 0);
    }
  }
  return 0;
}
