#include "agent/collectors/http_probe_collector.h"

#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/redact.h"
#include "common/status.h"
#include "common/yaml_util.h"

namespace vigil::agent {

absl::Status ParseStatusRange(absl::string_view text, int* min, int* max) {
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "status '", text, "' must be a code (200), a range (200-299) or a class (2xx) in 100..599"));
  };
  int lo = 0, hi = 0;
  if (text.size() == 3 && (text[1] == 'x' || text[1] == 'X') && (text[2] == 'x' || text[2] == 'X') &&
      text[0] >= '1' && text[0] <= '5') {
    lo = (text[0] - '0') * 100;
    hi = lo + 99;
  } else if (const size_t dash = text.find('-'); dash != absl::string_view::npos) {
    if (!absl::SimpleAtoi(text.substr(0, dash), &lo) ||
        !absl::SimpleAtoi(text.substr(dash + 1), &hi)) {
      return bad();
    }
  } else if (absl::SimpleAtoi(text, &lo)) {
    hi = lo;
  } else {
    return bad();
  }
  if (lo < 100 || hi > 599 || lo > hi) {
    return bad();
  }
  *min = lo;
  *max = hi;
  return absl::OkStatus();
}

absl::StatusOr<HttpProbeOptions> ParseHttpProbeConfig(const YAML::Node& config,
                                                      absl::string_view file) {
  RETURN_IF_ERROR(YamlCheckKeys(config, file, "collectors.http_probe", {"targets", "failures_kept"}));
  const YAML::Node targets = config.IsMap() ? config["targets"] : YAML::Node();
  if (!targets.IsSequence() || targets.size() == 0 || targets.size() > kMaxProbeTargets) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, targets.IsDefined() ? targets : config),
                     ": collectors.http_probe.targets must be a list of 1 to ", kMaxProbeTargets,
                     " targets"));
  }
  HttpProbeOptions options;
  ASSIGN_OR_RETURN(int64_t kept,
                   YamlInt(config, "failures_kept", file, 20, 1, kMaxProbeFailuresKept));
  options.failures_kept = static_cast<size_t>(kept);
  std::set<std::string> names;
  for (size_t i = 0; i < targets.size(); ++i) {
    const YAML::Node t = targets[i];
    const std::string context = absl::StrCat("collectors.http_probe.targets[", i, "]");
    RETURN_IF_ERROR(
        YamlCheckKeys(t, file, context, {"name", VIGIL_HTTP_SOURCE_KEYS, "expect_status"}));
    if (!t.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, t), ": ", context, " must be a map"));
    }
    ProbeTarget target;
    ASSIGN_OR_RETURN(target.name, YamlString(t, "name", file, true));
    if (target.name.empty() || target.name.size() > 128 || !names.insert(target.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, t["name"]), ": ", context,
                                                     ".name '", target.name,
                                                     "' must be 1 to 128 bytes and unique"));
    }
    // A health page is small: 64 KiB is plenty, and a probe must not read a whole download.
    ASSIGN_OR_RETURN(target.source, ReadHttpSource(t, file, context, absl::Seconds(2), 64 << 10));
    ASSIGN_OR_RETURN(std::string expect, YamlString(t, "expect_status", file, false, "200-399"));
    if (absl::Status s = ParseStatusRange(expect, &target.min_status, &target.max_status);
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, t["expect_status"]), ": ",
                                                     context, ".expect_status: ", s.message()));
    }
    options.targets.push_back(std::move(target));
  }
  return options;
}

HttpProbeCollector::HttpProbeCollector(HttpProbeOptions options) : options_(std::move(options)) {
  for (const ProbeTarget& t : options_.targets) {
    up_.emplace_back(absl::StrCat("http_probe target ", t.name, " at ", Redact(t.source.url)));
  }
}

void HttpProbeCollector::Collect(absl::Time now, Collection& out) {
  for (size_t i = 0; i < options_.targets.size(); ++i) {
    const ProbeTarget& target = options_.targets[i];
    const Labels labels = {{"target", target.name}};
    HttpOutcome outcome = TimedHttpGet(target.source);
    const int status = outcome.response.ok() ? outcome.response->status : 0;
    std::string error;
    if (!outcome.response.ok()) {
      error = Redact(outcome.response.status().message());
    } else if (status < target.min_status || status > target.max_status) {
      error = absl::StrCat("HTTP ", status, ", expected ", target.min_status, "-",
                           target.max_status);
    }
    out.Gauge("http_probe_up", error.empty() ? 1 : 0, labels);
    out.Gauge("http_probe_status_code", status, labels);
    out.Gauge("http_probe_duration_seconds", absl::ToDoubleSeconds(outcome.elapsed), labels);
    if (error.empty()) {
      up_[i].Up();
      continue;
    }
    up_[i].Down(error);
    failures_.push_back(
        {now, target.name, Redact(target.source.url), status, std::move(error), outcome.elapsed});
    while (failures_.size() > options_.failures_kept) {
      failures_.pop_front();
    }
  }
}

std::vector<v1::DiagnosticTable> HttpProbeCollector::Diagnose(
    absl::Time now, const std::vector<std::string>& names) {
  v1::DiagnosticTable table;
  table.set_name("http_probe_failures");
  table.set_collected_unix_ms(absl::ToUnixMillis(now));
  for (const char* c : {"time", "target", "url", "status", "error", "seconds"}) {
    table.add_columns(c);
  }
  for (auto it = failures_.rbegin(); it != failures_.rend(); ++it) {
    auto* row = table.add_rows();
    row->add_cells(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", it->time, absl::UTCTimeZone()));
    row->add_cells(it->target);
    row->add_cells(it->url);
    row->add_cells(absl::StrCat(it->status));
    row->add_cells(it->error);
    row->add_cells(absl::StrFormat("%.3f", absl::ToDoubleSeconds(it->latency)));
  }
  return {table};
}

absl::StatusOr<std::unique_ptr<Collector>> NewHttpProbeCollector(const YAML::Node& config,
                                                                 absl::string_view file) {
  ASSIGN_OR_RETURN(HttpProbeOptions options, ParseHttpProbeConfig(config, file));
  return std::make_unique<HttpProbeCollector>(std::move(options));
}

}  // namespace vigil::agent
