// What a simulated agent says on its stream, shaped like vigil-agent with the host, nginx,
// postgres and redis collectors: a Hello with labels, collectors and actions, then one
// TelemetryBatch per round whose first batch on a stream declares every series (the agent's
// per-stream SeriesDictionary numbers them densely from 1). The benchmark conditions of
// DESIGN.md: 45 gauges + 5 latency histograms by default. Values stay below the default rules'
// thresholds, so the load is telemetry, not an alert storm. Immutable after construction;
// thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "vigil/v1/agent_service.pb.h"

namespace vigil::loadgen {

class TelemetryModel {
 public:
  // `gauges` >= 1 and `histograms` >= 0; the names come from the metric schema (disk mounts
  // make up the gauges beyond the fixed ones).
  TelemetryModel(int gauges, int histograms);

  v1::Hello MakeHello(absl::string_view agent_id, int64_t interval_ms,
                      absl::string_view instance_id) const;

  // One round for agent `agent_index`: `sequence`, `snapshots` snapshots 10 ms apart ending at
  // `time_unix_ms` (1: a collection round; more: an agent catching up); the series definitions
  // first when `declare` (the first batch of a stream).
  void FillBatch(uint64_t agent_index, uint64_t sequence, int64_t time_unix_ms, bool declare,
                 v1::TelemetryBatch* out, int snapshots = 1) const;

  // Samples in one snapshot: one per series, a histogram counting as one.
  int samples_per_batch() const { return static_cast<int>(series_.size()); }
  int gauges() const { return gauges_; }
  int histograms() const { return histograms_; }

 private:
  struct Series {
    std::string name;
    std::string label_key;  // "" when the series has no label
    std::string label_value;
    double low = 0;  // gauge values stay in [low, high)
    double high = 0;
  };
  static constexpr int kHistogramVariants = 16;

  int gauges_;
  int histograms_;
  std::vector<Series> series_;  // gauges first, then histograms; id = index + 1
  std::vector<v1::Histogram> variants_;  // pre-filled latency histograms, picked per round
};

}  // namespace vigil::loadgen
