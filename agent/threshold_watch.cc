#include "agent/threshold_watch.h"

#include <re2/re2.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace vigil::agent {
namespace {

bool TextOk(const std::string& text) { return text.size() <= kMaxWatchTextBytes; }

}  // namespace

bool WatchedThreshold::Matches(const Labels& series_labels, const Labels& agent_labels) const {
  static const std::string kEmpty;
  for (const Matcher& m : matchers) {
    const std::string* actual = &kEmpty;
    if (auto it = series_labels.find(m.label); it != series_labels.end()) {
      actual = &it->second;
    } else if (auto it2 = agent_labels.find(m.label); it2 != agent_labels.end()) {
      actual = &it2->second;
    }
    bool ok = false;
    switch (m.op) {
      case v1::WatchMatcher::EQUAL:
        ok = *actual == m.value;
        break;
      case v1::WatchMatcher::NOT_EQUAL:
        ok = *actual != m.value;
        break;
      case v1::WatchMatcher::REGEX:
        ok = RE2::FullMatch(*actual, *m.regex);
        break;
      case v1::WatchMatcher::NOT_REGEX:
        ok = !RE2::FullMatch(*actual, *m.regex);
        break;
      default:
        ok = false;
    }
    if (!ok) {
      return false;
    }
  }
  return true;
}

bool WatchedThreshold::Met(double value) const {
  switch (comparison) {
    case v1::WatchThreshold::GREATER:
      return value > threshold;
    case v1::WatchThreshold::GREATER_EQUAL:
      return value >= threshold;
    case v1::WatchThreshold::LESS:
      return value < threshold;
    case v1::WatchThreshold::LESS_EQUAL:
      return value <= threshold;
    case v1::WatchThreshold::EQUAL:
      return value == threshold;
    case v1::WatchThreshold::NOT_EQUAL:
      return value != threshold;
    default:
      return false;
  }
}

std::shared_ptr<const ThresholdSet> ThresholdSet::Build(const v1::WatchThresholds& message,
                                                        Labels agent_labels,
                                                        std::vector<std::string>* errors) {
  auto set = std::make_shared<ThresholdSet>();
  set->agent_labels_ = std::move(agent_labels);
  const int count = message.thresholds_size();
  if (count > kMaxWatchThresholds) {
    errors->push_back(absl::StrCat(count, " thresholds, more than the ", kMaxWatchThresholds,
                                   " taken; the rest are left to the collection rounds"));
  }
  for (int i = 0; i < count && i < kMaxWatchThresholds; ++i) {
    const v1::WatchThreshold& in = message.thresholds(i);
    auto refuse = [&](absl::string_view why) {
      errors->push_back(absl::StrCat("threshold ", i, " (rule '",
                                     in.rule().substr(0, kMaxWatchTextBytes), "'): ", why));
    };
    if (in.metric().empty() || !TextOk(in.metric()) || !TextOk(in.rule())) {
      refuse("metric empty, or metric or rule longer than 256 bytes");
      continue;
    }
    if (!v1::WatchThreshold::Comparison_IsValid(in.comparison()) ||
        in.comparison() == v1::WatchThreshold::COMPARISON_UNSPECIFIED) {
      refuse(absl::StrCat("comparison ", in.comparison(), " unknown"));
      continue;
    }
    if (!std::isfinite(in.threshold())) {
      refuse("threshold is not a finite number");
      continue;
    }
    if (in.matchers_size() > kMaxWatchMatchers) {
      refuse(absl::StrCat(in.matchers_size(), " matchers, more than ", kMaxWatchMatchers));
      continue;
    }
    WatchedThreshold t;
    t.metric = in.metric();
    t.comparison = in.comparison();
    t.threshold = in.threshold();
    t.rule = in.rule();
    bool ok = true;
    for (int j = 0; j < in.matchers_size() && ok; ++j) {
      const v1::WatchMatcher& m = in.matchers(j);
      if (m.label().empty() || !TextOk(m.label()) || !TextOk(m.value())) {
        refuse(absl::StrCat("matcher ", j, ": label empty, or label or value too long"));
        ok = false;
        break;
      }
      WatchedThreshold::Matcher matcher{.label = m.label(), .op = m.op(), .value = m.value()};
      switch (m.op()) {
        case v1::WatchMatcher::EQUAL:
        case v1::WatchMatcher::NOT_EQUAL:
          break;
        case v1::WatchMatcher::REGEX:
        case v1::WatchMatcher::NOT_REGEX: {
          RE2::Options options;
          options.set_log_errors(false);
          auto regex = std::make_shared<re2::RE2>(m.value(), options);
          if (!regex->ok()) {
            refuse(absl::StrCat("matcher ", j, ": bad regular expression: ", regex->error()));
            ok = false;
          }
          matcher.regex = std::move(regex);
          break;
        }
        default:
          refuse(absl::StrCat("matcher ", j, ": operator ", m.op(), " unknown"));
          ok = false;
      }
      t.matchers.push_back(std::move(matcher));
    }
    if (!ok) {
      continue;
    }
    set->by_metric_[t.metric].push_back(set->thresholds_.size());
    set->thresholds_.push_back(std::move(t));
  }
  return set;
}

const std::vector<size_t>* ThresholdSet::On(absl::string_view metric) const {
  auto it = by_metric_.find(metric);
  return it == by_metric_.end() ? nullptr : &it->second;
}

std::vector<std::string> ThresholdSet::metrics() const {
  std::vector<std::string> out;
  for (const auto& [metric, unused] : by_metric_) {
    out.push_back(metric);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string CrossingDetector::Key(size_t index, const GaugePoint& point) {
  // Length-prefixed: no label text can make two series share a key.
  std::string key = absl::StrCat(index, "|", point.name.size(), ":", point.name);
  for (const auto& [k, v] : point.labels) {
    absl::StrAppend(&key, "|", k.size(), ":", k, v.size(), ":", v);
  }
  return key;
}

std::vector<CrossingDetector::Crossing> CrossingDetector::Crossings(
    const ThresholdSet& set, const std::vector<GaugePoint>& gauges) const {
  std::vector<Crossing> out;
  for (const GaugePoint& point : gauges) {
    const std::vector<size_t>* indexes = set.On(point.name);
    if (indexes == nullptr) {
      continue;
    }
    for (size_t index : *indexes) {
      const WatchedThreshold& t = set.thresholds()[index];
      if (t.Met(point.value) && t.Matches(point.labels, set.agent_labels()) &&
          !met_.contains(Key(index, point))) {
        out.push_back({&t, &point});
      }
    }
  }
  return out;
}

void CrossingDetector::Record(const ThresholdSet& set, const std::vector<GaugePoint>& gauges) {
  for (const GaugePoint& point : gauges) {
    const std::vector<size_t>* indexes = set.On(point.name);
    if (indexes == nullptr) {
      continue;
    }
    for (size_t index : *indexes) {
      const WatchedThreshold& t = set.thresholds()[index];
      if (t.Met(point.value) && t.Matches(point.labels, set.agent_labels())) {
        met_.insert(Key(index, point));
      } else {
        met_.erase(Key(index, point));
      }
    }
  }
}

}  // namespace vigil::agent
