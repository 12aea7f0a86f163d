// Scrapes local /metrics endpoints in the Prometheus text format (0.0.4) with the one HTTP client,
// bounded in time and bytes, and turns the families of each target's allow-list into Vigil
// metrics in the open name space (DESIGN.md, "Metric names"), declared in the agent's Hello:
//   counter   -> a gauge, its per-second rate over the interval (a reset gives no sample that
//                round; the first round gives none either);
//   gauge, untyped -> a gauge;
//   histogram -> a Vigil histogram (LogHistogram) of the round's new observations: the delta of
//                the cumulative `_bucket`s since the last round, each bucket's count placed at
//                its upper bound `le`, the +Inf bucket's at the largest finite bound. A quantile
//                is thus exact only to the bucket: it reads the upper bound of the bucket holding
//                it (within LogHistogram's 1 %), while the true value lies anywhere in
//                (previous bound, bound]; a quantile in the +Inf bucket reads the largest bound.
//   summary   -> not converted (its quantiles are not mergeable); the family is reported.
// Every series carries label target=<target name> (an exported `target` becomes
// `exported_target`). Used by its collector thread only.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "agent/collector.h"
#include "agent/collectors/prometheus_text.h"

namespace vigil::agent {

// One family of a target's allow-list.
struct PromFamilyRule {
  std::string family;  // exact family name in the scrape
  PromType type = PromType::kGauge;  // counter, gauge, untyped or histogram (from the config)
  bool all_labels = true;
  std::vector<std::string> labels;  // allow-list when !all_labels; the others are summed away
  std::string metric;  // the Vigil name: the target's prefix + family
};

struct PromTargetOptions {
  std::string name;  // the `target` label
  std::string url;
  absl::Duration timeout = absl::Seconds(2);  // connect and whole exchange
  size_t max_bytes = 4 << 20;                 // response size cap
  size_t max_series = 1'000;                  // series this target may produce a round
  std::map<std::string, PromFamilyRule> families;  // by family name
};

// What one round of one target did (for the diagnostic, tests and the benchmark).
struct PromRoundStats {
  bool up = false;
  std::string error;  // why down, or the first parse error
  size_t bytes = 0;
  size_t samples = 0;       // samples of allow-listed families read
  size_t series = 0;        // series produced (gauges and histograms)
  size_t dropped = 0;       // over the cap or the controller's label bounds
  size_t parse_errors = 0;  // malformed lines
  std::vector<std::string> mismatched;  // families whose scraped type is not the configured one
  absl::Duration took;
};

// Converts one target's scrapes into Vigil metrics; keeps the previous round's counters and
// cumulative buckets. Pure apart from that state: no I/O. Not thread-safe.
class PromTargetConverter {
 public:
  explicit PromTargetConverter(const PromTargetOptions* target) : target_(target) {}
  // Parses `body` (scraped at `now`) and appends this round's values to `out`.
  PromRoundStats Convert(absl::string_view body, absl::Time now, Collection& out);
  // The target went down: forget the baselines (a restarted exporter starts from zero).
  void Reset();

 private:
  struct CounterState {
    double value = 0;
    absl::Time time;
  };
  struct BucketState {
    std::vector<std::pair<double, double>> buckets;  // (le, cumulative), le ascending
  };
  const PromTargetOptions* target_;
  std::map<std::string, CounterState> counters_;    // by series key
  std::map<std::string, BucketState> histograms_;  // by series key (labels without le)
};

struct PrometheusCollectorOptions {
  std::vector<PromTargetOptions> targets;
};

class PrometheusCollector final : public Collector {
 public:
  explicit PrometheusCollector(PrometheusCollectorOptions options);

  absl::string_view name() const override { return "prometheus"; }
  void Collect(absl::Time now, Collection& out) override;
  std::vector<v1::MetricDeclaration> DeclaredMetrics() const override;
  std::vector<std::string> DiagnosticNames() const override { return {"prometheus_targets"}; }
  std::vector<v1::DiagnosticTable> Diagnose(absl::Time now,
                                            const std::vector<std::string>& names) override;

 private:
  struct Target {
    PromTargetOptions options;
    std::unique_ptr<PromTargetConverter> converter;
    PromRoundStats last;
    bool was_up = true;  // for one log line per change
    std::vector<std::string> mismatched_logged;
  };
  std::vector<std::unique_ptr<Target>> targets_;
};

// `collectors.prometheus`: {targets: [{name, url, timeout?, max_bytes?, max_series?, prefix?,
// labels?, series: {FAMILY: TYPE | {type: TYPE, labels: [...]}}}]}. Errors name file, line and
// key; a Vigil name that is a schema name or under a built-in collector's prefix is refused.
absl::StatusOr<std::unique_ptr<Collector>> NewPrometheusCollector(const YAML::Node& config,
                                                                  absl::string_view file);

}  // namespace vigil::agent
