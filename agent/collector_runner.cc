#include "agent/collector_runner.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/cleanup/cleanup.h"
#include "common/logging.h"

namespace vigil::agent {

namespace {

// `phase` brought into [0, interval), whole milliseconds as the rounds' times are.
absl::Duration PhaseWithin(absl::Duration phase, absl::Duration interval) {
  const int64_t step = absl::ToInt64Milliseconds(interval);
  if (step <= 0) {
    return absl::ZeroDuration();
  }
  const int64_t ms = absl::ToInt64Milliseconds(phase) % step;
  return absl::Milliseconds(ms < 0 ? ms + step : ms);
}

}  // namespace

absl::Duration RoundPhase(absl::string_view agent_id, absl::Duration interval) {
  const int64_t step = absl::ToInt64Milliseconds(interval);
  if (step <= 0) {
    return absl::ZeroDuration();
  }
  uint64_t hash = 14695981039346656037ULL;
  for (const char c : agent_id) {
    hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  }
  return absl::Milliseconds(static_cast<int64_t>(hash % static_cast<uint64_t>(step)));
}

CollectorRunner::CollectorRunner(std::unique_ptr<Collector> collector, absl::Duration interval,
                                 const Clock* clock, Sink sink, SensingOptions sensing,
                                 absl::Duration phase)
    : collector_(std::move(collector)),
      name_(collector_->name()),
      diagnostic_names_(collector_->DiagnosticNames()),
      sensed_gauges_(collector_->SensedGauges()),
      interval_(interval),
      phase_(PhaseWithin(phase, interval)),
      clock_(clock),
      sink_(std::move(sink)),
      sensing_(sensing),
      // A simulated clock moves without telling anyone, so its deadlines must be polled.
      sleeps_to_deadline_(dynamic_cast<const RealClock*>(clock) != nullptr) {}

CollectorRunner::~CollectorRunner() { Stop(); }

void CollectorRunner::Start() {
  if (sensing_.watch != nullptr && !sensed_gauges_.empty()) {
    // A new set wakes the thread, which takes it at once (no polling for it).
    listener_ = sensing_.watch->Listen([this] {
      absl::MutexLock lock(&mu_);
      thresholds_replaced_ = true;
    });
  }
  thread_ = std::thread([this] { Loop(); });
}

void CollectorRunner::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) {
    thread_.join();
  }
  if (listener_ >= 0) {
    sensing_.watch->Unlisten(listener_);
    listener_ = -1;
  }
}

void CollectorRunner::RequestDiagnostics(std::vector<std::string> names, DiagnosticsDone done) {
  absl::MutexLock lock(&mu_);
  requests_.push_back({std::move(names), std::move(done)});
}

void CollectorRunner::TakeThresholds(std::shared_ptr<const ThresholdSet> set, absl::Time now) {
  thresholds_ = std::move(set);
  detector_.Reset();
  sensed_.clear();
  if (thresholds_ != nullptr) {
    for (const std::string& gauge : sensed_gauges_) {
      if (thresholds_->On(gauge) != nullptr) {
        sensed_.push_back(gauge);
      }
    }
  }
  if (sensed_.empty()) {
    next_sense_ = absl::InfiniteFuture();
  } else {
    // What the last round said already counts: a series over its threshold then is no crossing.
    detector_.Record(*thresholds_, last_round_);
    next_sense_ = now + sensing_.every;
  }
  taken_.fetch_add(1);
}

void CollectorRunner::Sense(absl::Time now) {
  // Counted on every way out, once the check is over (tests wait for it, not for the reading).
  const absl::Cleanup count_when_done = [this] { checks_.fetch_add(1); };
  Collection sensed;
  sensed.time = now;
  collector_->Sense(now, sensed_, sensed);
  if (sensed.gauges.empty()) {
    return;
  }
  const std::vector<CrossingDetector::Crossing> crossings =
      detector_.Crossings(*thresholds_, sensed.gauges);
  if (crossings.empty()) {
    detector_.Record(*thresholds_, sensed.gauges);
    return;
  }
  if (now - last_early_ < sensing_.min_early_gap) {
    // Not recorded: if it still holds at the next check after the gap, it goes then (or the
    // round carries it first).
    held_back_.fetch_add(1);
    return;
  }
  for (const CrossingDetector::Crossing& c : crossings) {
    spdlog::debug("{}: {} = {} crossed the threshold of rule {} between rounds: early snapshot",
                  name_, c.point->name, c.point->value, c.threshold->rule);
  }
  detector_.Record(*thresholds_, sensed.gauges);
  last_early_ = now;
  early_.fetch_add(1);
  sink_(std::move(sensed));
}

void CollectorRunner::Loop() {
  // Rounds fall at the agent's phase past each multiple of the interval: every collector of one
  // agent samples at the same instant, and agents' phases spread over the interval (RoundPhase).
  const int64_t step = absl::ToInt64Milliseconds(interval_);
  const int64_t phase = absl::ToInt64Milliseconds(phase_);
  absl::Time next =
      absl::FromUnixMillis(((clock_->NowUnixMillis() - phase) / step + 1) * step + phase);
  while (true) {
    if (sensing_.watch != nullptr && !sensed_gauges_.empty()) {
      if (std::shared_ptr<const ThresholdSet> current = sensing_.watch->Current();
          current != thresholds_) {
        TakeThresholds(std::move(current), clock_->Now());
      }
    }
    const absl::Time wake_at = std::min(next, next_sense_);
    std::vector<DiagnosticsRequest> requests;
    {
      absl::MutexLock lock(&mu_);
      // Sleeps until the deadline unless there is work before it: a diagnostics request (it
      // must not wait a round), a new threshold set, or Stop.
      auto work = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_ || !requests_.empty() || thresholds_replaced_;
      };
      while (!work()) {
        const absl::Time now = clock_->Now();
        if (now >= wake_at) {
          break;
        }
        if (sleeps_to_deadline_) {
          mu_.AwaitWithDeadline(absl::Condition(&work), wake_at);
        } else {
          mu_.AwaitWithTimeout(absl::Condition(&work),
                               std::min(absl::Milliseconds(50), wake_at - now));
        }
      }
      if (stopping_) {
        return;
      }
      thresholds_replaced_ = false;  // the loop's top takes the current set
      requests.swap(requests_);
    }
    for (DiagnosticsRequest& request : requests) {
      std::vector<std::string> names;
      for (const std::string& table : diagnostic_names_) {
        bool wanted = request.names.empty();
        for (const std::string& n : request.names) {
          wanted = wanted || DiagnosticNameMatches(n, table);
        }
        if (wanted) {
          names.push_back(table);
        }
      }
      std::vector<v1::DiagnosticTable> tables;
      if (!names.empty()) {
        tables = collector_->Diagnose(clock_->Now(), names);
      }
      request.done(std::move(tables));
    }
    const absl::Time now = clock_->Now();
    if (now < next) {
      if (now >= next_sense_) {
        Sense(now);
        next_sense_ = clock_->Now() + sensing_.every;
      }
      continue;
    }
    Collection collection;
    collection.time = next;  // the round's instant, not the jittered wake-up
    collector_->Collect(now, collection);
    if (!sensed_gauges_.empty() && sensing_.watch != nullptr) {
      last_round_.clear();
      for (const GaugePoint& g : collection.gauges) {
        if (std::find(sensed_gauges_.begin(), sensed_gauges_.end(), g.name) !=
            sensed_gauges_.end()) {
          last_round_.push_back(g);
        }
      }
      if (!sensed_.empty()) {
        detector_.Record(*thresholds_, last_round_);
        // The round just read everything: the next check is a full step away.
        next_sense_ = clock_->Now() + sensing_.every;
      }
    }
    sink_(std::move(collection));
    // A round that overran skips the missed slots instead of bursting to catch up.
    while (next <= clock_->Now()) {
      next += interval_;
    }
  }
}

}  // namespace vigil::agent
