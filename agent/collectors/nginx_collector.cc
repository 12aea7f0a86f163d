#include "agent/collectors/nginx_collector.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "common/yaml_util.h"

namespace vigil::agent {

NginxCollector::NginxCollector(NginxCollectorOptions options, LogFormat format)
    : options_(std::move(options)),
      format_(std::move(format)),
      tailer_(options_.access_log, options_.from_start),
      up_(absl::StrCat("nginx access log ", options_.access_log)) {}

void NginxCollector::Observe(absl::string_view line) {
  AccessLogEntry entry;
  if (!format_.Parse(line, &entry)) {
    ++unparsed_;
    uint64_t suppressed = 0;
    if (unparsed_log_.Allow(absl::Now(), &suppressed)) {
      spdlog::warn("{}: line does not match log_format ({} similar suppressed): {}",
                   options_.access_log, suppressed, line.substr(0, 300));
    }
    return;
  }
  ++requests_;
  if (entry.status >= 500) {
    ++errors_;
  }
  if (entry.request_time >= 0) {
    latency_.Add(entry.request_time);
  }
  if (!entry.path.empty()) {
    auto it = endpoints_.find(entry.path);
    if (it == endpoints_.end()) {
      it = endpoints_.size() < options_.max_endpoints
               ? endpoints_.emplace(std::string(entry.path), Endpoint{}).first
               : endpoints_.try_emplace("(other)").first;
    }
    ++it->second.count;
    if (entry.request_time >= 0) {
      it->second.latency.Add(entry.request_time);
    }
  }
}

void NginxCollector::Rotate(absl::Time now) {
  if (now - generation_start_ < absl::Minutes(1)) {
    return;
  }
  previous_endpoints_ = std::move(endpoints_);
  endpoints_.clear();
  generation_start_ = now;
}

void NginxCollector::Collect(absl::Time now, Collection& out) {
  absl::Status status = tailer_.Poll([this](absl::string_view line) { Observe(line); });
  if (!status.ok()) {
    up_.Down(status.message());
    out.Gauge("nginx_up", 0);
  } else {
    up_.Up();
    out.Gauge("nginx_up", 1);
  }
  if (last_collect_ != absl::InfinitePast()) {
    const double seconds = std::max(absl::ToDoubleSeconds(now - last_collect_), 1e-3);
    out.Gauge("nginx_requests_per_second", static_cast<double>(requests_) / seconds);
    out.Gauge("nginx_error_ratio",
              requests_ == 0 ? 0 : static_cast<double>(errors_) / static_cast<double>(requests_));
    out.Gauge("nginx_unparsed_lines", static_cast<double>(unparsed_));
    // Every interval, even empty: merging on the controller needs to know nothing happened.
    out.Histogram("nginx_request_duration_seconds", latency_);
  }
  last_collect_ = now;
  requests_ = errors_ = unparsed_ = 0;
  latency_.Clear();
  Rotate(now);
}

std::vector<v1::DiagnosticTable> NginxCollector::Diagnose(absl::Time now,
                                                          const std::vector<std::string>& names) {
  v1::DiagnosticTable table;
  table.set_name("nginx_slow_endpoints");
  table.set_collected_unix_ms(absl::ToUnixMillis(now));
  for (const char* c : {"path", "count", "p95_seconds", "p99_seconds"}) {
    table.add_columns(c);
  }
  // Fold in what arrived since the last round so the table is current.
  tailer_.Poll([this](absl::string_view line) { Observe(line); }).IgnoreError();
  std::map<std::string, Endpoint, std::less<>> merged = previous_endpoints_;
  for (const auto& [path, e] : endpoints_) {
    Endpoint& m = merged[path];
    m.count += e.count;
    m.latency.Merge(e.latency);
  }
  std::vector<std::pair<double, const std::pair<const std::string, Endpoint>*>> ranked;
  for (const auto& entry : merged) {
    ranked.emplace_back(entry.second.latency.Quantile(0.95), &entry);
  }
  std::sort(ranked.begin(), ranked.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; i < ranked.size() && i < static_cast<size_t>(options_.slow_endpoints); ++i) {
    const auto& [path, e] = *ranked[i].second;
    auto* row = table.add_rows();
    row->add_cells(path);
    row->add_cells(absl::StrCat(e.count));
    row->add_cells(absl::StrFormat("%.3f", ranked[i].first));
    row->add_cells(absl::StrFormat("%.3f", e.latency.Quantile(0.99)));
  }
  return {table};
}

absl::StatusOr<std::unique_ptr<Collector>> NewNginxCollector(const YAML::Node& config,
                                                             absl::string_view file) {
  RETURN_IF_ERROR(YamlCheckKeys(config, file, "collectors.nginx",
                                {"access_log", "log_format", "slow_endpoints"}));
  NginxCollectorOptions options;
  ASSIGN_OR_RETURN(options.access_log, YamlString(config, "access_log", file, true));
  ASSIGN_OR_RETURN(options.log_format,
                   YamlString(config, "log_format", file, false, options.log_format));
  ASSIGN_OR_RETURN(double slow, YamlDouble(config, "slow_endpoints", file, options.slow_endpoints));
  if (!(slow >= 0 && slow <= 1000)) {  // also refuses .nan, before the conversion to int
    return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, config["slow_endpoints"]),
                                                   ": collectors.nginx.slow_endpoints must be 0 to "
                                                   "1000"));
  }
  options.slow_endpoints = static_cast<int>(slow);
  absl::StatusOr<LogFormat> format = LogFormat::Compile(options.log_format);
  if (!format.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, config["log_format"]),
                     ": collectors.nginx.log_format: ", format.status().message()));
  }
  return std::make_unique<NginxCollector>(std::move(options), std::move(*format));
}

}  // namespace vigil::agent
