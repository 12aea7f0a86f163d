// Sensing between collection rounds: the thresholds the controller derives from its per-agent
// gauge rules (v1::WatchThresholds), and the detector that tells when a series crosses into one.
// ThresholdSet is immutable once built (thread-safe); ThresholdWatch holds the current set and
// is thread-safe (the stream's reader replaces it, collector runners read it); a
// CrossingDetector belongs to one collector runner's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "agent/collector.h"
#include "vigil/v1/agent_service.pb.h"

namespace re2 {
class RE2;
}

namespace vigil::agent {

// Bounds on what the controller may send (checked before anything is sized by it).
inline constexpr int kMaxWatchThresholds = 1024;
inline constexpr int kMaxWatchMatchers = 16;
inline constexpr size_t kMaxWatchTextBytes = 256;  // a metric, label, value or rule name

struct WatchedThreshold {
  struct Matcher {
    std::string label;
    v1::WatchMatcher::Op op = v1::WatchMatcher::EQUAL;
    std::string value;
    std::shared_ptr<const re2::RE2> regex;  // REGEX and NOT_REGEX
  };
  std::string metric;
  std::vector<Matcher> matchers;
  v1::WatchThreshold::Comparison comparison = v1::WatchThreshold::GREATER;
  double threshold = 0;
  std::string rule;

  // As the controller's rules read labels: the series' first, then the agent's; missing is "".
  bool Matches(const Labels& series_labels, const Labels& agent_labels) const;
  bool Met(double value) const;
};

class ThresholdSet {
 public:
  // Takes the controller's message. A malformed threshold is left out and named in `errors`
  // (by index and field); the others are kept. More than kMaxWatchThresholds: the rest are
  // left out, with one error.
  static std::shared_ptr<const ThresholdSet> Build(const v1::WatchThresholds& message,
                                                   Labels agent_labels,
                                                   std::vector<std::string>* errors);

  bool empty() const { return thresholds_.empty(); }
  size_t size() const { return thresholds_.size(); }
  const std::vector<WatchedThreshold>& thresholds() const { return thresholds_; }
  // Indexes into thresholds() of those on `metric`; nullptr when none.
  const std::vector<size_t>* On(absl::string_view metric) const;
  // The metrics with at least one threshold, sorted.
  std::vector<std::string> metrics() const;
  const Labels& agent_labels() const { return agent_labels_; }

 private:
  std::vector<WatchedThreshold> thresholds_;
  absl::flat_hash_map<std::string, std::vector<size_t>> by_metric_;
  Labels agent_labels_;
};

class ThresholdWatch {
 public:
  void Replace(std::shared_ptr<const ThresholdSet> set) {
    absl::MutexLock lock(&mu_);
    current_ = std::move(set);
    for (const auto& [id, listener] : listeners_) {
      listener();
    }
  }
  // nullptr until the controller sent a set.
  std::shared_ptr<const ThresholdSet> Current() const {
    absl::MutexLock lock(&mu_);
    return current_;
  }
  // `listener` runs after each Replace until Unlisten(the id returned), so a reader can sleep
  // instead of polling for a new set. It runs on the replacing thread under the watch's lock
  // (never after Unlisten returned): it must only note the change, never call the watch.
  int Listen(std::function<void()> listener) const {
    absl::MutexLock lock(&mu_);
    listeners_.emplace_back(++last_listener_, std::move(listener));
    return last_listener_;
  }
  void Unlisten(int id) const {
    absl::MutexLock lock(&mu_);
    std::erase_if(listeners_, [id](const auto& l) { return l.first == id; });
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const ThresholdSet> current_ ABSL_GUARDED_BY(mu_);
  // Listening changes nothing watched, hence callable on a const watch.
  mutable std::vector<std::pair<int, std::function<void()>>> listeners_ ABSL_GUARDED_BY(mu_);
  mutable int last_listener_ ABSL_GUARDED_BY(mu_) = 0;
};

// Remembers, per threshold and series, whether the last value judged met it, so that a series
// crossing into a threshold is told once per crossing (it must leave the threshold before it
// counts again).
class CrossingDetector {
 public:
  struct Crossing {
    const WatchedThreshold* threshold;
    const GaugePoint* point;
  };
  // The series of `gauges` that meet a threshold of `set` and did not at their last judgement
  // (or were never judged). Changes nothing.
  std::vector<Crossing> Crossings(const ThresholdSet& set,
                                  const std::vector<GaugePoint>& gauges) const;
  // Takes `gauges` as the last judgement of their series.
  void Record(const ThresholdSet& set, const std::vector<GaugePoint>& gauges);
  // Forgets everything (a new set: indexes change).
  void Reset() { met_.clear(); }

 private:
  static std::string Key(size_t index, const GaugePoint& point);
  absl::flat_hash_set<std::string> met_;  // Key(threshold index, series) for those met
};

}  // namespace vigil::agent
