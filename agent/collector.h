// The collector interface: one implementation per data source (host, nginx, postgres, redis).
// Each collector runs on its own thread (see collector_runner.h), so a slow or hung source never
// delays the others. A Collector instance is used by one thread at a time; it need not lock.
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/histogram.h"
#include "vigil/v1/agent_service.pb.h"
#include "vigil/v1/telemetry.pb.h"

namespace vigil::agent {

using Labels = std::map<std::string, std::string>;

struct GaugePoint {
  std::string name;
  Labels labels;
  double value = 0;
};

struct HistogramPoint {
  std::string name;
  Labels labels;
  LogHistogram histogram;
};

// What one collection round produced.
struct Collection {
  absl::Time time;
  std::vector<GaugePoint> gauges;
  std::vector<HistogramPoint> histograms;

  void Gauge(absl::string_view name, double value, Labels labels = {}) {
    gauges.push_back({std::string(name), std::move(labels), value});
  }
  void Histogram(absl::string_view name, LogHistogram h, Labels labels = {}) {
    histograms.push_back({std::string(name), std::move(labels), std::move(h)});
  }
};

class Collector {
 public:
  virtual ~Collector() = default;

  // The config key of this collector ("host", "nginx", ...).
  virtual absl::string_view name() const = 0;

  // One round: append this interval's values to `out`. Must not throw; must bound its own I/O
  // with timeouts. A source that is down is reported through `<name>_up` = 0, not an error.
  virtual void Collect(absl::Time now, Collection& out) = 0;

  // The gauges this collector can read between rounds at little cost, for the thresholds the
  // controller asks the agent to watch: instantaneous values (clients, memory, load), never
  // rates or ratios over the interval, and nothing that loads the monitored service.
  virtual std::vector<std::string> SensedGauges() const { return {}; }

  // Reads `names` (a subset of SensedGauges()) now and appends them to `out`. Called on the
  // collector's own thread between rounds, up to ten times a second: one /proc read or one
  // round trip. Leaves the rounds' state (counter baselines) as it was, and never connects to a
  // source that is down; a failure appends nothing (the next round reports it).
  virtual void Sense(absl::Time now, const std::vector<std::string>& names, Collection& out) {}

  // Metrics outside the built-in schema this collector may produce (scraping collectors only:
  // prometheus, http_json), known from its config before the first round. The agent declares
  // them in its Hello so that rules may name them.
  virtual std::vector<v1::MetricDeclaration> DeclaredMetrics() const { return {}; }

  // Names of the diagnostic tables this collector can produce (e.g. "top_processes").
  virtual std::vector<std::string> DiagnosticNames() const { return {}; }

  // Produces the requested tables (a subset of DiagnosticNames()). A failure is reported in the
  // table's `error` field. Called on the collector's own thread, between rounds.
  virtual std::vector<v1::DiagnosticTable> Diagnose(absl::Time now,
                                                    const std::vector<std::string>& names) {
    return {};
  }
};

// A requested diagnostic name selects a table of that name or a family of them:
// "top_processes" selects "top_processes_cpu" and "top_processes_memory".
inline bool DiagnosticNameMatches(absl::string_view requested, absl::string_view table) {
  return table == requested ||
         (table.size() > requested.size() && table.substr(0, requested.size()) == requested &&
          table[requested.size()] == '_');
}

// Builds a collector from its config node (`collectors.<name>` of the agent config).
// `file` names the config file for error messages.
using CollectorFactory = std::function<absl::StatusOr<std::unique_ptr<Collector>>(
    const YAML::Node& config, absl::string_view file)>;

// Name -> factory, filled by RegisterBuiltinCollectors (an explicit table: static
// self-registration is dropped by the linker from static libraries).
class CollectorRegistry {
 public:
  void Register(std::string name, CollectorFactory factory) {
    factories_[std::move(name)] = std::move(factory);
  }
  const CollectorFactory* Find(absl::string_view name) const {
    auto it = factories_.find(std::string(name));
    return it == factories_.end() ? nullptr : &it->second;
  }
  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const auto& [name, unused] : factories_) {
      names.push_back(name);
    }
    return names;
  }

 private:
  std::map<std::string, CollectorFactory> factories_;
};

void RegisterBuiltinCollectors(CollectorRegistry& registry);

}  // namespace vigil::agent
