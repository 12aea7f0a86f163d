// Runs one collector on its own thread, one round per interval, so a slow or hung source never
// delays the others. Diagnostic requests are served on the same thread between rounds (a
// Collector is never used by two threads). Between rounds it also senses: when the controller
// sent thresholds on gauges this collector reads cheaply, it reads them every `sense_every`
// and hands the sink an early snapshot when one crosses a threshold (one per crossing, at most
// one per `min_early_gap`), so detection does not wait for the next round. The thread sleeps
// until its next deadline (round or check), a diagnostics request, a new threshold set or Stop;
// only a simulated clock is polled. Thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/collector.h"
#include "agent/threshold_watch.h"
#include "common/clock.h"

namespace vigil::agent {

struct SensingOptions {
  const ThresholdWatch* watch = nullptr;  // not owned; nullptr: no sensing
  absl::Duration every = absl::Milliseconds(100);
  absl::Duration min_early_gap = absl::Milliseconds(250);
};

// Where within each interval an agent's rounds fall: a fixed offset in [0, interval) from its
// id (FNV-1a, the same on every build and host). A fleet whose clocks agree then spreads its
// rounds over the interval, as Prometheus spreads its scrapes, instead of every agent sending in
// the same few milliseconds of each second; a fault still waits half an interval for the next
// round on average.
absl::Duration RoundPhase(absl::string_view agent_id, absl::Duration interval);

class CollectorRunner {
 public:
  using Sink = std::function<void(Collection)>;
  using DiagnosticsDone = std::function<void(std::vector<v1::DiagnosticTable>)>;

  // `sink` receives each round's values; it is called on the runner's thread.
  // `sink` also receives early snapshots (time: when sensed, between two rounds' instants).
  // Rounds fall at `phase` past each multiple of `interval` since the epoch (RoundPhase).
  CollectorRunner(std::unique_ptr<Collector> collector, absl::Duration interval, const Clock* clock,
                  Sink sink, SensingOptions sensing = {},
                  absl::Duration phase = absl::ZeroDuration());
  ~CollectorRunner();  // stops and joins

  void Start();
  void Stop();

  // Asks for diagnostic tables (a subset of DiagnosticNames(), or all of them when `names` is
  // empty); `done` runs on the runner's thread once they are produced.
  void RequestDiagnostics(std::vector<std::string> names, DiagnosticsDone done);

  absl::string_view name() const { return name_; }
  const std::vector<std::string>& diagnostic_names() const { return diagnostic_names_; }
  // The gauges its collector can sense between rounds.
  const std::vector<std::string>& sensed_gauges() const { return sensed_gauges_; }
  // Early snapshots handed to the sink, and crossings held back by min_early_gap.
  uint64_t early_snapshots() const { return early_.load(); }
  uint64_t early_held_back() const { return held_back_.load(); }
  // Threshold sets taken from the watch (each a new set from the controller, or none).
  uint64_t thresholds_taken() const { return taken_.load(); }
  // Checks between rounds done, each to its end (an early snapshot it sent is with the sink).
  uint64_t checks_done() const { return checks_.load(); }

 private:
  struct DiagnosticsRequest {
    std::vector<std::string> names;
    DiagnosticsDone done;
  };
  void Loop();
  // A new threshold set (or none): what to sense, judged from the last round's values.
  void TakeThresholds(std::shared_ptr<const ThresholdSet> set, absl::Time now);
  // One check between rounds.
  void Sense(absl::Time now);

  std::unique_ptr<Collector> collector_;
  const std::string name_;
  const std::vector<std::string> diagnostic_names_;
  const std::vector<std::string> sensed_gauges_;
  const absl::Duration interval_;
  const absl::Duration phase_;  // in [0, interval_)
  const Clock* clock_;
  Sink sink_;
  const SensingOptions sensing_;
  // Whether its waits can sleep to the deadline (the real clock) or must poll (simulated).
  const bool sleeps_to_deadline_;
  int listener_ = -1;  // its listener on sensing_.watch; -1: none
  std::thread thread_;

  // Sensing state, the runner thread's own.
  std::shared_ptr<const ThresholdSet> thresholds_;
  std::vector<std::string> sensed_;  // watched gauges this collector senses; empty: none
  CrossingDetector detector_;
  std::vector<GaugePoint> last_round_;  // the last round's watched gauges
  absl::Time next_sense_ = absl::InfiniteFuture();
  absl::Time last_early_ = absl::InfinitePast();
  std::atomic<uint64_t> early_{0};
  std::atomic<uint64_t> held_back_{0};
  std::atomic<uint64_t> taken_{0};
  std::atomic<uint64_t> checks_{0};

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool thresholds_replaced_ ABSL_GUARDED_BY(mu_) = false;  // the watch has a new set
  std::vector<DiagnosticsRequest> requests_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vigil::agent
