#include "agent/collector_runner.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/logging.h"

namespace vigil::agent {

CollectorRunner::CollectorRunner(std::unique_ptr<Collector> collector, absl::Duration interval,
                                 const Clock* clock, Sink sink)
    : collector_(std::move(collector)),
      name_(collector_->name()),
      diagnostic_names_(collector_->DiagnosticNames()),
      interval_(interval),
      clock_(clock),
      sink_(std::move(sink)) {}

CollectorRunner::~CollectorRunner() { Stop(); }

void CollectorRunner::Start() {
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
}

void CollectorRunner::RequestDiagnostics(std::vector<std::string> names, DiagnosticsDone done) {
  absl::MutexLock lock(&mu_);
  requests_.push_back({std::move(names), std::move(done)});
}

void CollectorRunner::Loop() {
  // Rounds are aligned to multiples of the interval so every collector of every agent samples
  // at about the same instant, which keeps fleet-wide aggregates coherent.
  const int64_t step = absl::ToInt64Milliseconds(interval_);
  absl::Time next = absl::FromUnixMillis((clock_->NowUnixMillis() / step + 1) * step);
  while (true) {
    std::vector<DiagnosticsRequest> requests;
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this, next]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_ || !requests_.empty() || clock_->Now() >= next;
      };
      // Poll at a fine grain: the clock may be simulated, and requests must not wait a round.
      while (!wake()) {
        mu_.AwaitWithTimeout(absl::Condition(&wake),
                             std::min(absl::Milliseconds(50), next - clock_->Now()));
      }
      if (stopping_) {
        return;
      }
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
      continue;
    }
    Collection collection;
    collection.time = next;  // the aligned instant, not the jittered wake-up
    collector_->Collect(now, collection);
    sink_(std::move(collection));
    // A round that overran skips the missed slots instead of bursting to catch up.
    while (next <= clock_->Now()) {
      next += interval_;
    }
  }
}

}  // namespace vigil::agent
