#include "common/metric_schema.h"

#include <algorithm>
#include <array>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace vigil {
namespace {

constexpr std::array kMetrics = {
    // host
    MetricInfo{"host_cpu_usage_ratio", MetricKind::kGauge, "ratio", "CPU busy share over the interval, all cores"},
    MetricInfo{"host_memory_used_ratio", MetricKind::kGauge, "ratio", "(MemTotal - MemAvailable) / MemTotal"},
    MetricInfo{"host_disk_used_ratio", MetricKind::kGauge, "ratio", "Used share of a real filesystem, by mount"},
    MetricInfo{"host_load1", MetricKind::kGauge, "", "1-minute load average"},
    MetricInfo{"host_swap_used_ratio", MetricKind::kGauge, "ratio", "(SwapTotal - SwapFree) / SwapTotal; 0 without swap"},
    MetricInfo{"host_up", MetricKind::kGauge, "bool", "1 when the host collector read /proc successfully"},
    // nginx
    MetricInfo{"nginx_requests_per_second", MetricKind::kGauge, "1/s", "Requests logged per second"},
    MetricInfo{"nginx_request_duration_seconds", MetricKind::kHistogram, "s", "Request time ($request_time)"},
    MetricInfo{"nginx_error_ratio", MetricKind::kGauge, "ratio", "5xx responses / all responses"},
    MetricInfo{"nginx_up", MetricKind::kGauge, "bool", "1 when the access log is readable"},
    MetricInfo{"nginx_unparsed_lines", MetricKind::kGauge, "lines", "Lines in the interval that did not parse"},
    // postgres
    MetricInfo{"pg_active_connections", MetricKind::kGauge, "", "Client backends that are not idle"},
    MetricInfo{"pg_connections_used_ratio", MetricKind::kGauge, "ratio", "Client connections / max_connections"},
    MetricInfo{"pg_longest_query_seconds", MetricKind::kGauge, "s", "Age of the longest running active query"},
    MetricInfo{"pg_blocked_queries", MetricKind::kGauge, "", "Backends waiting on a lock held by another"},
    MetricInfo{"pg_connections", MetricKind::kGauge, "", "Client connections by state (active, idle, idle in transaction, ...)"},
    MetricInfo{"pg_up", MetricKind::kGauge, "bool", "1 when PostgreSQL answered"},
    // redis
    MetricInfo{"redis_ops_per_second", MetricKind::kGauge, "1/s", "instantaneous_ops_per_sec"},
    MetricInfo{"redis_connected_clients", MetricKind::kGauge, "", "connected_clients"},
    MetricInfo{"redis_keyspace_hit_ratio", MetricKind::kGauge, "ratio", "hits / (hits + misses) over the interval"},
    MetricInfo{"redis_used_memory_bytes", MetricKind::kGauge, "bytes", "used_memory"},
    MetricInfo{"redis_up", MetricKind::kGauge, "bool", "1 when Redis answered"},
    MetricInfo{"redis_used_memory_rss_bytes", MetricKind::kGauge, "bytes", "used_memory_rss"},
    MetricInfo{"redis_used_memory_peak_bytes", MetricKind::kGauge, "bytes", "used_memory_peak"},
    MetricInfo{"redis_maxmemory_bytes", MetricKind::kGauge, "bytes", "maxmemory (0: no limit)"},
    MetricInfo{"redis_mem_fragmentation_ratio", MetricKind::kGauge, "ratio", "mem_fragmentation_ratio (RSS / used)"},
    MetricInfo{"redis_evicted_keys_per_second", MetricKind::kGauge, "1/s", "Keys evicted per second over the interval"},
    MetricInfo{"celery_queue_length", MetricKind::kGauge, "", "LLEN of a configured Celery broker queue, by queue"},
    // app_log
    MetricInfo{"app_log_errors_per_second", MetricKind::kGauge, "1/s", "Application log lines matching an error pattern, by module"},
    MetricInfo{"app_log_up", MetricKind::kGauge, "bool", "1 when every configured application log is readable"},
    // http_probe
    MetricInfo{"http_probe_up", MetricKind::kGauge, "bool", "1 when the target answered with an expected status, by target"},
    MetricInfo{"http_probe_status_code", MetricKind::kGauge, "", "HTTP status of the probe (0: no answer), by target"},
    MetricInfo{"http_probe_duration_seconds", MetricKind::kGauge, "s", "Time to the whole answer or the failure, by target"},
    // nginx_status (stub_status)
    MetricInfo{"nginx_status_up", MetricKind::kGauge, "bool", "1 when the stub_status page was read"},
    MetricInfo{"nginx_status_active_connections", MetricKind::kGauge, "", "Active client connections, waiting ones included"},
    MetricInfo{"nginx_status_reading", MetricKind::kGauge, "", "Connections reading a request head"},
    MetricInfo{"nginx_status_writing", MetricKind::kGauge, "", "Connections writing a response"},
    MetricInfo{"nginx_status_waiting", MetricKind::kGauge, "", "Idle keep-alive connections"},
    MetricInfo{"nginx_status_accepts_per_second", MetricKind::kGauge, "1/s", "Connections accepted per second"},
    MetricInfo{"nginx_status_handled_per_second", MetricKind::kGauge, "1/s", "Connections handled per second (below accepts: limits hit)"},
    MetricInfo{"nginx_status_requests_per_second", MetricKind::kGauge, "1/s", "Requests per second, all servers"},
    // http_json (its gauges are declared by the agent, outside this schema)
    MetricInfo{"http_json_up", MetricKind::kGauge, "bool", "1 when the endpoint answered 2xx with JSON, by endpoint"},
    // prometheus (scraped series themselves are declared by the agent, outside this schema)
    MetricInfo{"prometheus_up", MetricKind::kGauge, "bool", "1 when the target's /metrics answered 200 and parsed, by target"},
    MetricInfo{"prometheus_scrape_seconds", MetricKind::kGauge, "s", "Time to fetch, parse and convert one target's /metrics, by target"},
    MetricInfo{"prometheus_series_dropped", MetricKind::kGauge, "", "Series of the allow-list left out this round (series cap, label bounds), by target"},
};

}  // namespace

std::span<const MetricInfo> AllMetrics() { return kMetrics; }

const MetricInfo* FindMetric(absl::string_view name) {
  for (const MetricInfo& m : kMetrics) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

bool IsPerSecondRate(const MetricInfo& metric) {
  return metric.kind == MetricKind::kGauge && metric.unit == "1/s";
}

const std::vector<std::string>& ReservedMetricPrefixes() {
  static const std::vector<std::string>* const prefixes = [] {
    auto* out = new std::vector<std::string>;
    for (const MetricInfo& m : kMetrics) {
      if (absl::EndsWith(m.name, "_up")) {
        out->emplace_back(m.name.substr(0, m.name.size() - 2));
      }
    }
    for (const MetricInfo& m : kMetrics) {
      const bool covered = std::any_of(out->begin(), out->end(), [&](const std::string& p) {
        return absl::StartsWith(m.name, p);
      });
      const size_t word = m.name.find('_');
      if (!covered && word != absl::string_view::npos) {
        out->push_back(absl::StrCat(m.name.substr(0, word), "_"));
      }
    }
    std::sort(out->begin(), out->end());
    out->erase(std::unique(out->begin(), out->end()), out->end());
    return out;
  }();
  return *prefixes;
}

absl::string_view ReservedPrefixOf(absl::string_view name) {
  absl::string_view best;
  for (const std::string& p : ReservedMetricPrefixes()) {
    if (absl::StartsWith(name, p) && p.size() > best.size()) {
      best = p;
    }
  }
  return best;
}

namespace {

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

const MetricInfo* NearestMetric(absl::string_view name) {
  if (name.size() > 256) {
    return nullptr;  // bounded cost: rule text, never telemetry
  }
  const MetricInfo* best = nullptr;
  size_t best_distance = name.size() / 2 + 1;
  for (const MetricInfo& m : kMetrics) {
    const size_t d = EditDistance(name, m.name);
    if (d < best_distance) {
      best = &m;
      best_distance = d;
    }
  }
  return best;
}

}  // namespace vigil
