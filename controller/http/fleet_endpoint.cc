#include "controller/http/fleet_endpoint.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/http/gzip.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/yaml_util.h"

namespace vigil::controller {

absl::StatusOr<std::string> ReadBearerTokenFile(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadConfigFile(path));
  const std::string token(absl::StripAsciiWhitespace(text));
  if (token.size() < 16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fleet metrics token file ", path, ": the token has ", token.size(),
        " characters, fewer than 16 (make one with: openssl rand -hex 32 > ", path, ")"));
  }
  for (const char c : token) {
    if (c <= ' ' || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "fleet metrics token file ", path,
          ": the token holds whitespace or a control character; an HTTP header cannot carry it"));
    }
  }
  return token;
}

namespace {

http::HttpResponse Busy(absl::string_view why) {
  http::HttpResponse response = http::TextResponse(503, why);
  response.headers.emplace_back("Retry-After", "1");
  return response;
}

}  // namespace

FleetMetricsEndpoint::FleetMetricsEndpoint(Options options, Snapshot snapshot, HelpSource help)
    : options_(std::move(options)), snapshot_(std::move(snapshot)), help_(std::move(help)) {}

http::HttpResponse FleetMetricsEndpoint::Handle(const http::HttpRequest& request) {
  if (!BearerTokenMatches(request.Header("authorization"), options_.token)) {
    ++unauthorized_;
    // No detail: whether the header was missing, malformed or wrong is for the log.
    static RateLimitedLog limiter(5, absl::Minutes(1));
    if (uint64_t suppressed = 0; limiter.Allow(absl::Now(), &suppressed)) {
      spdlog::warn("{}: refused {} (401): {} ({} similar messages not logged)", kFleetMetricsPath,
                   request.peer,
                   request.Header("authorization").empty() ? "no Authorization header"
                                                           : "wrong bearer token",
                   suppressed);
    }
    http::HttpResponse response = http::TextResponse(401, "unauthorized");
    response.headers.emplace_back("WWW-Authenticate", "Bearer");
    return response;
  }
  // One page at a time (each costs the whole page in memory): a scrape that arrives meanwhile
  // waits for it and gets a copy, rather than a 503 that would leave a gap in its series.
  std::shared_ptr<const http::HttpResponse> page;
  {
    absl::MutexLock lock(&mu_);
    if (!rendering_) {
      rendering_ = true;
    } else if (waiting_ >= kMaxWaiting) {
      ++busy_;
      return Busy("too many scrapes of the fleet page at once");
    } else {
      ++waiting_;
      const uint64_t awaited = built_ + 1;
      auto done = [this, awaited]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return built_ >= awaited;
      };
      if (mu_.AwaitWithTimeout(absl::Condition(&done), kWaitForPage)) {
        page = shared_;
      }
      if (--waiting_ == 0) {
        shared_.reset();  // the last one out lets the page go
      }
      if (page == nullptr) {
        ++busy_;
        return Busy("the fleet page being built took too long");
      }
    }
  }
  if (page != nullptr) {
    http::HttpResponse copy = *page;  // the copy happens outside the lock
    http::MaybeGzip(request, copy);
    return copy;
  }
  http::HttpResponse response = Build();
  {
    absl::MutexLock lock(&mu_);
    rendering_ = false;
    ++built_;
    if (waiting_ > 0) {
      shared_ = std::make_shared<const http::HttpResponse>(response);
    }
  }
  // Each scrape compresses its own copy (outside the lock): a waiting scraper may not take gzip.
  http::MaybeGzip(request, response);
  return response;
}

http::HttpResponse FleetMetricsEndpoint::Build() {
  const absl::Time start = absl::Now();
  const std::vector<FleetState::ExposedAgent> agents = snapshot_();
  http::HttpResponse response;
  response.content_type = "text/plain; version=0.0.4; charset=utf-8";
  // Pages change slowly: the last one's size spares the copies of a growing 100 MB string.
  response.body.reserve(std::min<size_t>(last_page_bytes_.load() / 8 * 9, options_.max_page_bytes));
  absl::StatusOr<ExpositionStats> stats =
      RenderFleetExposition(agents, help_(), options_.max_page_bytes, &response.body);
  last_render_seconds_ = absl::ToDoubleSeconds(absl::Now() - start);
  if (!stats.ok()) {
    ++too_large_;
    static RateLimitedLog limiter(1, absl::Minutes(1));
    if (uint64_t suppressed = 0; limiter.Allow(absl::Now(), &suppressed)) {
      spdlog::error("{}: {} ({} similar messages not logged)", kFleetMetricsPath,
                    stats.status().message(), suppressed);
    }
    response = http::TextResponse(503, stats.status().message());
    return response;
  }
  ++pages_;
  last_page_bytes_ = response.body.size();
  last_page_series_ = stats->series;
  return response;
}

FleetMetricsEndpoint::Counters FleetMetricsEndpoint::counters() const {
  int waiting = 0;
  {
    absl::MutexLock lock(&mu_);
    waiting = waiting_;
  }
  return Counters{.pages = pages_.load(),
                  .unauthorized = unauthorized_.load(),
                  .busy = busy_.load(),
                  .too_large = too_large_.load(),
                  .last_page_bytes = last_page_bytes_.load(),
                  .last_page_series = last_page_series_.load(),
                  .last_render_seconds = last_render_seconds_.load(),
                  .waiting = waiting};
}

void FleetMetricsEndpoint::AppendMetrics(std::string* page) const {
  const Counters c = counters();
  absl::StrAppendFormat(
      page,
      "# HELP vigil_fleet_pages_total Fleet pages served on %s.\n"
      "# TYPE vigil_fleet_pages_total counter\nvigil_fleet_pages_total %d\n"
      "# HELP vigil_fleet_requests_refused_total Fleet page requests refused, by reason.\n"
      "# TYPE vigil_fleet_requests_refused_total counter\n"
      "vigil_fleet_requests_refused_total{reason=\"unauthorized\"} %d\n"
      "vigil_fleet_requests_refused_total{reason=\"busy\"} %d\n"
      "vigil_fleet_requests_refused_total{reason=\"too_large\"} %d\n"
      "# HELP vigil_fleet_last_page_bytes Size of the last fleet page served.\n"
      "# TYPE vigil_fleet_last_page_bytes gauge\nvigil_fleet_last_page_bytes %d\n"
      "# HELP vigil_fleet_last_page_series Series on the last fleet page served.\n"
      "# TYPE vigil_fleet_last_page_series gauge\nvigil_fleet_last_page_series %d\n"
      "# HELP vigil_fleet_last_render_seconds Time the last fleet page took to snapshot and "
      "format.\n# TYPE vigil_fleet_last_render_seconds gauge\n"
      "vigil_fleet_last_render_seconds %.6f\n",
      kFleetMetricsPath, c.pages, c.unauthorized, c.busy, c.too_large, c.last_page_bytes,
      c.last_page_series, c.last_render_seconds);
}

}  // namespace vigil::controller
