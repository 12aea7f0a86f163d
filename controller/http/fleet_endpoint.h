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
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
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
  // 503 when the page is too large. A scrape that arrives while a page is being built (the
  // second server of an HA pair) waits for that page and is served it, up to kMaxWaiting at once
  // and for at most kWaitForPage; beyond either, 503 with Retry-After.
  http::HttpResponse Handle(const http::HttpRequest& request);
  static constexpr int kMaxWaiting = 4;
  static constexpr absl::Duration kWaitForPage = absl::Seconds(30);

  struct Counters {
    uint64_t pages = 0;
    uint64_t unauthorized = 0;
    uint64_t busy = 0;
    uint64_t too_large = 0;
    uint64_t last_page_bytes = 0;
    uint64_t last_page_series = 0;
    double last_render_seconds = 0;  // snapshot and formatting
    int waiting = 0;                 // scrapes waiting for the page being built, now
  };
  Counters counters() const;
  // The counters in the exposition format, for the controller's own /metrics.
  void AppendMetrics(std::string* page) const;

 private:
  const Options options_;
  const Snapshot snapshot_;
  const HelpSource help_;
  // Builds a page (no lock held).
  http::HttpResponse Build();

  mutable absl::Mutex mu_;
  bool rendering_ ABSL_GUARDED_BY(mu_) = false;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t built_ ABSL_GUARDED_BY(mu_) = 0;  // pages finished, served or refused
  // The last page, kept only while scrapes that waited for it have not copied it.
  std::shared_ptr<const http::HttpResponse> shared_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> pages_{0};
  std::atomic<uint64_t> unauthorized_{0};
  std::atomic<uint64_t> busy_{0};
  std::atomic<uint64_t> too_large_{0};
  std::atomic<uint64_t> last_page_bytes_{0};
  std::atomic<uint64_t> last_page_series_{0};
  std::atomic<double> last_render_seconds_{0};
};

}  // namespace vigil::controller
