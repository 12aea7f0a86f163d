#include "bench/loadgen/telemetry_model.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/histogram.h"

namespace vigil::loadgen {
namespace {

// A cheap, well-mixed hash (splitmix64) so values vary by agent and round without an RNG.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

TelemetryModel::TelemetryModel(int gauges, int histograms)
    : gauges_(std::max(gauges, 1)), histograms_(std::max(histograms, 0)) {
  // The collectors' gauges, with values under the default rules' thresholds (HighCPU 0.9,
  // HighMemoryUsage 0.85, DiskSpaceWarning 0.8, HighErrorRate 0.05, DBConnectionsExhausted 0.95).
  const std::vector<Series> fixed = {
      {"host_cpu_usage_ratio", "", "", 0.05, 0.5},
      {"host_memory_used_ratio", "", "", 0.3, 0.6},
      {"host_load1", "", "", 0.1, 1.5},
      {"host_up", "", "", 1, 1},
      {"nginx_requests_per_second", "", "", 50, 300},
      {"nginx_error_ratio", "", "", 0, 0.01},
      {"nginx_up", "", "", 1, 1},
      {"nginx_unparsed_lines", "", "", 0, 0},
      {"pg_active_connections", "", "", 2, 20},
      {"pg_connections_used_ratio", "", "", 0.05, 0.3},
      {"pg_longest_query_seconds", "", "", 0, 0.5},
      {"pg_blocked_queries", "", "", 0, 0},
      {"pg_up", "", "", 1, 1},
      {"redis_ops_per_second", "", "", 100, 2000},
      {"redis_connected_clients", "", "", 5, 50},
      {"redis_keyspace_hit_ratio", "", "", 0.95, 0.999},
      {"redis_used_memory_bytes", "", "", 5e7, 2e8},
      {"redis_up", "", "", 1, 1},
  };
  for (int i = 0; i < gauges_; ++i) {
    if (i < static_cast<int>(fixed.size())) {
      series_.push_back(fixed[i]);
    } else {
      // Hosts with many filesystems: the rest of the gauges are mounts.
      const int disk = i - static_cast<int>(fixed.size());
      series_.push_back({"host_disk_used_ratio", "mount",
                         disk == 0 ? std::string("/") : absl::StrCat("/srv/disk", disk), 0.1,
                         0.6});
    }
  }
  for (int h = 0; h < histograms_; ++h) {
    series_.push_back({"nginx_request_duration_seconds", "endpoint",
                       absl::StrCat("/api/v1/endpoint", h), 0, 0});
  }
  // Latencies around 50 ms (p95 near 0.2 s, far from HighAPILatency's 2 s), 50 requests a round.
  std::mt19937_64 rng(12);
  std::lognormal_distribution<double> latency(-3.0, 0.8);
  for (int v = 0; v < kHistogramVariants; ++v) {
    LogHistogram histogram;
    for (int i = 0; i < 50; ++i) {
      histogram.Add(latency(rng));
    }
    histogram.ToProto(&variants_.emplace_back());
  }
}

v1::Hello TelemetryModel::MakeHello(absl::string_view agent_id, int64_t interval_ms,
                                    absl::string_view instance_id) const {
  v1::Hello hello;
  hello.set_agent_id(std::string(agent_id));
  hello.set_hostname(std::string(agent_id));
  hello.set_version("loadgen");
  hello.set_interval_ms(interval_ms);
  hello.set_instance_id(std::string(instance_id));
  auto& labels = *hello.mutable_labels();
  labels["role"] = "api";
  labels["service"] = "rag-api";
  labels["env"] = "bench";
  for (const char* collector : {"host", "nginx", "postgres", "redis"}) {
    hello.add_collectors(collector);
  }
  const std::vector<std::pair<const char*, std::vector<const char*>>> actions = {
      {"restart_service", {"unit"}},
      {"reload_nginx", {}},
      {"pg_terminate_backend", {"pid"}},
      {"logrotate", {"config"}}};
  for (const auto& [name, params] : actions) {
    v1::ActionDescriptor* action = hello.add_actions();
    action->set_name(name);
    for (const char* p : params) {
      action->add_parameters(p);
    }
  }
  return hello;
}

void TelemetryModel::FillBatch(uint64_t agent_index, uint64_t sequence, int64_t time_unix_ms,
                               bool declare, v1::TelemetryBatch* out, int snapshots) const {
  out->set_sequence(sequence);
  if (declare) {
    for (size_t i = 0; i < series_.size(); ++i) {
      v1::SeriesDefinition* def = out->add_new_series();
      def->set_id(static_cast<uint32_t>(i + 1));
      def->set_name(series_[i].name);
      if (!series_[i].label_key.empty()) {
        (*def->mutable_labels())[series_[i].label_key] = series_[i].label_value;
      }
    }
  }
  for (int k = 0; k < std::max(snapshots, 1); ++k) {
    v1::Snapshot* snapshot = out->add_snapshots();
    snapshot->set_time_unix_ms(time_unix_ms - (std::max(snapshots, 1) - 1 - k) * 10);
    snapshot->mutable_series_ids()->Reserve(gauges_);
    snapshot->mutable_values()->Reserve(gauges_);
    const uint64_t seed = Mix((agent_index * 1'000'003 + sequence) * 1'009 + k);
    for (int i = 0; i < gauges_; ++i) {
      const Series& s = series_[i];
      const double unit = static_cast<double>(Mix(seed + i) >> 11) * 0x1.0p-53;  // [0, 1)
      snapshot->add_series_ids(static_cast<uint32_t>(i + 1));
      snapshot->add_values(s.low + (s.high - s.low) * unit);
    }
    for (int h = 0; h < histograms_; ++h) {
      v1::HistogramPoint* point = snapshot->add_histograms();
      point->set_series_id(static_cast<uint32_t>(gauges_ + h + 1));
      *point->mutable_histogram() = variants_[(seed + h) % kHistogramVariants];
    }
  }
}

}  // namespace vigil::loadgen
