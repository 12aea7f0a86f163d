#include "common/metric_schema.h"

#include <array>

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
};

}  // namespace

std::span<const MetricInfo> AllMetrics() { return kMetrics; }

const MetricInfo* FindMetric(absl::string_view name) {
  for (const MetricInfo& m : kMetrics) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

}  // namespace vigil
