// nginx_status: reads nginx's stub_status page (the runbook's `curl -s localhost/nginx_status`)
// into connection gauges, and accepts/handled/requests as per-second rates over the interval
// (none on the first round or after a counter went backwards, i.e. nginx restarted). The agent's
// own request is taken out of every figure. Used by its collector thread only.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "agent/collector.h"
#include "agent/collectors/backoff.h"
#include "agent/collectors/http_source.h"

namespace vigil::agent {

struct StubStatus {
  uint64_t active = 0;
  uint64_t accepts = 0;
  uint64_t handled = 0;
  uint64_t requests = 0;
  uint64_t reading = 0;
  uint64_t writing = 0;
  uint64_t waiting = 0;
};

// Parses the stub_status page:
//   Active connections: 291
//   server accepts handled requests
//    16630948 16630948 31070465
//   Reading: 6 Writing: 179 Waiting: 106
// InvalidArgument (saying which part is missing or malformed) for anything else.
absl::StatusOr<StubStatus> ParseStubStatus(absl::string_view text);

class NginxStatusCollector final : public Collector {
 public:
  explicit NginxStatusCollector(HttpSource source);

  absl::string_view name() const override { return "nginx_status"; }
  void Collect(absl::Time now, Collection& out) override;
  // Connections now, one GET of the page.
  std::vector<std::string> SensedGauges() const override {
    return {"nginx_status_active_connections"};
  }
  void Sense(absl::Time now, const std::vector<std::string>& names, Collection& out) override;
  std::vector<std::string> DiagnosticNames() const override { return {"nginx_status"}; }
  // A fresh read of the page as field/value rows, or the error.
  std::vector<v1::DiagnosticTable> Diagnose(absl::Time now,
                                            const std::vector<std::string>& names) override;

 private:
  absl::StatusOr<StubStatus> Fetch();

  const HttpSource source_;
  UpState up_;
  bool down_ = false;
  std::optional<StubStatus> last_;
  absl::Time last_time_;
  uint64_t own_requests_ = 0;  // pages read between rounds (Sense, Diagnose)
};

absl::StatusOr<std::unique_ptr<Collector>> NewNginxStatusCollector(const YAML::Node& config,
                                                                   absl::string_view file);

}  // namespace vigil::agent
