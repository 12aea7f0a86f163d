// nginx telemetry from its access log: requests/s, 5xx ratio, a mergeable latency histogram per
// interval, and the slowest endpoints for diagnostics. Lines that do not parse are counted and
// sampled to the log at a bounded rate; they never stop the tailer. Used by its collector thread
// only.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "agent/collector.h"
#include "agent/collectors/backoff.h"
#include "agent/collectors/log_format.h"
#include "agent/collectors/log_tailer.h"
#include "common/histogram.h"
#include "common/logging.h"

namespace vigil::agent {

struct NginxCollectorOptions {
  std::string access_log;
  std::string log_format = std::string(LogFormat::kTimedCombined);
  int slow_endpoints = 10;
  size_t max_endpoints = 1000;  // distinct paths tracked; the rest go to "(other)"
  bool from_start = false;      // tests: read what is already in the log
};

class NginxCollector final : public Collector {
 public:
  NginxCollector(NginxCollectorOptions options, LogFormat format);

  absl::string_view name() const override { return "nginx"; }
  void Collect(absl::Time now, Collection& out) override;
  std::vector<std::string> DiagnosticNames() const override { return {"nginx_slow_endpoints"}; }
  std::vector<v1::DiagnosticTable> Diagnose(absl::Time now,
                                            const std::vector<std::string>& names) override;

  // One access-log line (public for benchmarks and tests).
  void Observe(absl::string_view line);

 private:
  struct Endpoint {
    uint64_t count = 0;
    LogHistogram latency;
  };
  void Rotate(absl::Time now);

  const NginxCollectorOptions options_;
  const LogFormat format_;
  LogTailer tailer_;
  UpState up_;
  RateLimitedLog unparsed_log_{3, absl::Minutes(1)};
  absl::Time last_collect_ = absl::InfinitePast();
  // This interval.
  uint64_t requests_ = 0;
  uint64_t errors_ = 0;
  uint64_t unparsed_ = 0;
  LogHistogram latency_;
  // Endpoints over the last one to two minutes: the current and the previous generation.
  std::map<std::string, Endpoint, std::less<>> endpoints_, previous_endpoints_;
  absl::Time generation_start_ = absl::InfinitePast();
};

absl::StatusOr<std::unique_ptr<Collector>> NewNginxCollector(const YAML::Node& config,
                                                             absl::string_view file);

}  // namespace vigil::agent
