// GET /fleet/metrics: the fleet's latest series for Prometheus (see fleet_exposition.h). The
// page is built on the HTTP worker from a snapshot (FleetState::ExposeConnected), one page at a
// time, and bounded in size; the caller needs the configured bearer token. Without a token the
// controller does not serve the endpoint at all.
// Thread-safe: Handle runs on the HTTP workers, the counters are read by /metrics.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/http/http_message.h"
#include "controller/http/fleet_exposition.h"
#include "controller/ingest/fleet_state.h"

namespace vigil::controller {

inline constexpr char kFleetMetricsPath[] = "/fleet/metrics";

// The token in `path`: the file's text without surrounding whitespace, at least 16 printable
// characters and no inner whitespace. The error names the file and what is wrong with it.
absl::StatusOr<std::string> ReadBearerTokenFile(const std::string& path);

class FleetMetricsEndpoint {
 public:
  struct Options {
    std::string token;  // not empty
    // A page past this is refused with 503 (and counted) rather than sent in part: a Prometheus
    // target that is missing series would look like a fleet that lost them.
    size_t max_page_bytes = size_t{512} << 20;
  };
  using Snapshot = std::function<std::vector<FleetState::ExposedAgent>()>;
  // Called once a page: the help of the families as they are declared now.
  using HelpSource = std::function<FamilyHelp()>;

  FleetMetricsEndpoint(Options options, Snapshot snapshot, HelpSource help);

  // 200 with the page; 401 (`WWW-Authenticate: Bearer`, no detail) without the right token;
  // 503 with Retry-After while another page is being built, or when the page is too large.
  http::HttpResponse Handle(const http::HttpRequest& request);

  struct Counters {
    uint64_t pages = 0;
    uint64_t unauthorized = 0;
    uint64_t busy = 0;
    uint64_t too_large = 0;
    uint64_t last_page_bytes = 0;
    uint64_t last_page_series = 0;
    double last_render_seconds = 0;  // snapshot and formatting
  };
  Counters counters() const;
  // The counters in the exposition format, for the controller's own /metrics.
  void AppendMetrics(std::string* page) const;

 private:
  const Options options_;
  const Snapshot snapshot_;
  const HelpSource help_;
  std::atomic<bool> rendering_{false};
  std::atomic<uint64_t> pages_{0};
  std::atomic<uint64_t> unauthorized_{0};
  std::atomic<uint64_t> busy_{0};
  std::atomic<uint64_t> too_large_{0};
  std::atomic<uint64_t> last_page_bytes_{0};
  std::atomic<uint64_t> last_page_series_{0};
  std::atomic<double> last_render_seconds_{0};
};

}  // namespace vigil::controller
