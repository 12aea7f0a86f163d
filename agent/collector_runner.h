// Runs one collector on its own thread, one round per interval, so a slow or hung source never
// delays the others. Diagnostic requests are served on the same thread between rounds (a
// Collector is never used by two threads). Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/collector.h"
#include "common/clock.h"

namespace vigil::agent {

class CollectorRunner {
 public:
  using Sink = std::function<void(Collection)>;
  using DiagnosticsDone = std::function<void(std::vector<v1::DiagnosticTable>)>;

  // `sink` receives each round's values; it is called on the runner's thread.
  CollectorRunner(std::unique_ptr<Collector> collector, absl::Duration interval, const Clock* clock,
                  Sink sink);
  ~CollectorRunner();  // stops and joins

  void Start();
  void Stop();

  // Asks for diagnostic tables (a subset of DiagnosticNames(), or all of them when `names` is
  // empty); `done` runs on the runner's thread once they are produced.
  void RequestDiagnostics(std::vector<std::string> names, DiagnosticsDone done);

  absl::string_view name() const { return name_; }
  const std::vector<std::string>& diagnostic_names() const { return diagnostic_names_; }

 private:
  struct DiagnosticsRequest {
    std::vector<std::string> names;
    DiagnosticsDone done;
  };
  void Loop();

  std::unique_ptr<Collector> collector_;
  const std::string name_;
  const std::vector<std::string> diagnostic_names_;
  const absl::Duration interval_;
  const Clock* clock_;
  Sink sink_;
  std::thread thread_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<DiagnosticsRequest> requests_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vigil::agent
