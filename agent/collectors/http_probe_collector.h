// http_probe: the runbook's `curl -I http://localhost:8000/health`, for every configured target
// and every round: http_probe_up{target} (answered, with the expected status), its status code
// and its latency. The last failures (time, target, url, status or error, latency) are kept in a
// bounded ring, the http_probe_failures table. Used by its collector thread only.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "agent/collector.h"
#include "agent/collectors/backoff.h"
#include "agent/collectors/http_source.h"

namespace vigil::agent {

inline constexpr size_t kMaxProbeTargets = 64;
inline constexpr int64_t kMaxProbeFailuresKept = 1000;

struct ProbeTarget {
  std::string name;
  HttpSource source;
  int min_status = 200;  // the expected status range, inclusive
  int max_status = 399;
};

struct HttpProbeOptions {
  std::vector<ProbeTarget> targets;
  size_t failures_kept = 20;
};

// "200", "200-299" or "2xx" into an inclusive range of 100..599; InvalidArgument otherwise.
absl::Status ParseStatusRange(absl::string_view text, int* min, int* max);

class HttpProbeCollector final : public Collector {
 public:
  explicit HttpProbeCollector(HttpProbeOptions options);

  absl::string_view name() const override { return "http_probe"; }
  void Collect(absl::Time now, Collection& out) override;
  std::vector<std::string> DiagnosticNames() const override { return {"http_probe_failures"}; }
  // The ring, newest first; no request is sent.
  std::vector<v1::DiagnosticTable> Diagnose(absl::Time now,
                                            const std::vector<std::string>& names) override;

 private:
  struct Failure {
    absl::Time time;
    std::string target;
    std::string url;
    int status = 0;
    std::string error;
    absl::Duration latency;
  };

  const HttpProbeOptions options_;
  std::vector<UpState> up_;
  std::deque<Failure> failures_;  // oldest first, at most options_.failures_kept
};

absl::StatusOr<HttpProbeOptions> ParseHttpProbeConfig(const YAML::Node& config,
                                                      absl::string_view file);
absl::StatusOr<std::unique_ptr<Collector>> NewHttpProbeCollector(const YAML::Node& config,
                                                                 absl::string_view file);

}  // namespace vigil::agent
