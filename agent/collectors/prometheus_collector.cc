#include "agent/collectors/prometheus_collector.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/http/http_client.h"
#include "common/metric_schema.h"
#include "common/status.h"
#include "common/yaml_util.h"

namespace vigil::agent {
namespace {

// The controller refuses a batch with a series beyond these (controller/ingest/
// telemetry_validator.h, IngestLimits): such a series is dropped here, never sent.
constexpr size_t kMaxLabels = 32;
constexpr size_t kMaxLabelKeyBytes = 64;
constexpr size_t kMaxLabelValueBytes = 512;
constexpr size_t kMaxNameBytes = 128;
// The controller's bound on declarations per Hello.
constexpr size_t kMaxDeclared = 2'000;

std::string SeriesKey(const std::string& metric, const Labels& labels) {
  std::string key = metric;
  for (const auto& [k, v] : labels) {
    absl::StrAppend(&key, "\x1f", k, "=", v);
  }
  return key;
}

bool WithinLabelBounds(const Labels& labels) {
  if (labels.size() > kMaxLabels) return false;
  for (const auto& [k, v] : labels) {
    if (k.size() > kMaxLabelKeyBytes || v.size() > kMaxLabelValueBytes) return false;
  }
  return true;
}

// Collects one round's allow-listed samples: values summed per output series (dropping labels
// sums the series they told apart, like Prometheus' `sum without (...)`).
class RoundVisitor final : public PromTextVisitor {
 public:
  explicit RoundVisitor(const PromTargetOptions& target) : target_(target) {}

  struct Series {
    const PromFamilyRule* rule = nullptr;
    Labels labels;
    double value = 0;
    std::map<double, double> buckets;  // histograms: le -> cumulative count
  };

  bool WantFamily(absl::string_view family) override {
    if (family != last_family_) {
      last_family_ = std::string(family);
      auto it = target_.families.find(last_family_);
      last_rule_ = it == target_.families.end() ? nullptr : &it->second;
    }
    return last_rule_ != nullptr;
  }

  void OnSample(const PromSample& s) override {
    const PromFamilyRule* rule = last_rule_;  // WantFamily was asked for this sample
    if (rule == nullptr) return;
    bool fits;
    switch (rule->type) {
      case PromType::kHistogram:
        fits = s.type == PromType::kHistogram;
        break;
      case PromType::kCounter:
        fits = s.type == PromType::kCounter || s.type == PromType::kUntyped;
        break;
      default:  // gauge, untyped
        fits = s.type != PromType::kHistogram && s.type != PromType::kSummary;
        break;
    }
    if (!fits) {
      mismatched.insert(rule->family);
      return;
    }
    const bool histogram = rule->type == PromType::kHistogram;
    if (histogram && !absl::EndsWith(s.name, "_bucket")) {
      return;  // x_sum, x_count: the buckets say it all
    }
    ++samples;
    Labels labels;
    double le = NAN;
    for (const auto& [k, v] : *s.labels) {
      if (histogram && k == "le") {
        if (!ParsePromValue(v, &le)) {
          le = NAN;
        }
        continue;
      }
      if (!rule->all_labels &&
          std::find(rule->labels.begin(), rule->labels.end(), k) == rule->labels.end()) {
        continue;
      }
      labels[k == "target" ? "exported_target" : k] = v;
    }
    labels["target"] = target_.name;
    if (histogram && (std::isnan(le))) {
      ++bad_buckets;
      return;
    }
    if (std::isnan(s.value)) {
      return;  // nothing to say this round
    }
    const std::string key = SeriesKey(rule->metric, labels);
    auto [it, added] = series.try_emplace(key);
    Series& out = it->second;
    if (added) {
      out.rule = rule;
      out.labels = std::move(labels);
    }
    if (histogram) {
      out.buckets[le] += s.value;
    } else {
      out.value += s.value;
    }
  }

  std::map<std::string, Series> series;  // by series key
  std::set<std::string> mismatched;
  size_t samples = 0;
  size_t bad_buckets = 0;

 private:
  const PromTargetOptions& target_;
  std::string last_family_;
  const PromFamilyRule* last_rule_ = nullptr;
};

// Counts as whole observations, within what a LogHistogram holds.
uint64_t Observations(double n) {
  if (!(n > 0)) return 0;
  return static_cast<uint64_t>(
      std::llround(std::min(n, static_cast<double>(LogHistogram::kMaxCount))));
}

std::string UnitOf(const PromFamilyRule& rule) {
  const absl::string_view f = rule.family;
  std::string base;
  if (absl::StrContains(f, "_seconds")) {
    base = "s";
  } else if (absl::StrContains(f, "_bytes")) {
    base = "bytes";
  } else if (absl::EndsWith(f, "_ratio")) {
    base = "ratio";
  }
  if (rule.type == PromType::kCounter) {
    return base.empty() ? "1/s" : absl::StrCat(base, "/s");
  }
  return base;
}

}  // namespace

void PromTargetConverter::Reset() {
  counters_.clear();
  histograms_.clear();
}

PromRoundStats PromTargetConverter::Convert(absl::string_view body, absl::Time now,
                                            Collection& out) {
  PromRoundStats stats;
  stats.bytes = body.size();
  RoundVisitor visitor(*target_);
  PromParseLimits limits;
  limits.max_bytes = target_->max_bytes;
  const PromParseSummary summary = ParsePrometheusText(body, visitor, limits);
  // Text with errors and not one sample is not an exposition (an HTML page, a wrong port).
  stats.up = summary.samples > 0 || summary.error_count == 0;
  stats.samples = visitor.samples;
  stats.parse_errors = summary.error_count;
  if (!summary.errors.empty()) {
    stats.error = absl::StrCat(summary.error_count, " malformed line(s); line ",
                               summary.errors[0].line, ": ", summary.errors[0].what);
  }
  if (visitor.bad_buckets > 0 && stats.error.empty()) {
    stats.error = absl::StrCat(visitor.bad_buckets, " bucket(s) without a numeric le");
  }
  stats.mismatched.assign(visitor.mismatched.begin(), visitor.mismatched.end());

  // Only this round's series keep a baseline: state stays within the series cap.
  std::map<std::string, CounterState> counters;
  std::map<std::string, BucketState> histograms;
  for (auto& [key, s] : visitor.series) {
    if (stats.series >= target_->max_series || !WithinLabelBounds(s.labels)) {
      ++stats.dropped;
      continue;
    }
    ++stats.series;
    switch (s.rule->type) {
      case PromType::kCounter: {
        auto prev = counters_.find(key);
        // A value below the last one is a reset (the process restarted): no rate this round.
        if (prev != counters_.end() && s.value >= prev->second.value && now > prev->second.time &&
            std::isfinite(s.value)) {
          out.Gauge(s.rule->metric,
                    (s.value - prev->second.value) / absl::ToDoubleSeconds(now - prev->second.time),
                    s.labels);
        }
        counters[key] = CounterState{s.value, now};
        break;
      }
      case PromType::kHistogram: {
        BucketState state;
        state.buckets.assign(s.buckets.begin(), s.buckets.end());  // le ascending
        bool valid = !state.buckets.empty();
        for (size_t i = 0; valid && i < state.buckets.size(); ++i) {
          const double c = state.buckets[i].second;
          valid = std::isfinite(c) && c >= 0 && (i == 0 || c >= state.buckets[i - 1].second);
        }
        if (!valid) {
          if (stats.error.empty()) {
            stats.error = absl::StrCat(s.rule->family, ": buckets not cumulative");
          }
          break;
        }
        auto prev = histograms_.find(key);
        if (prev != histograms_.end() && prev->second.buckets.size() == state.buckets.size()) {
          const auto& before = prev->second.buckets;
          // The largest finite bound takes the +Inf bucket's observations.
          double top = NAN;
          for (const auto& [le, unused] : state.buckets) {
            if (std::isfinite(le)) top = le;
          }
          LogHistogram h;
          bool reset = false;
          double below = 0;  // cumulative delta of the buckets below
          for (size_t i = 0; i < state.buckets.size() && !reset; ++i) {
            const auto [le, count] = state.buckets[i];
            if (before[i].first != le || count < before[i].second) {
              reset = true;  // new bounds, or a restart
              break;
            }
            const double delta = count - before[i].second;
            const double in_bucket = std::max(0.0, delta - below);
            below = std::max(below, delta);
            const double at = std::isfinite(le) ? le : top;
            if (std::isnan(at)) continue;  // only +Inf: nowhere to place them
            h.Add(std::max(at, 0.0), Observations(in_bucket));
          }
          if (!reset && h.count() > 0) {
            out.Histogram(s.rule->metric, std::move(h), s.labels);
          }
        }
        histograms[key] = std::move(state);
        break;
      }
      default:
        if (std::isfinite(s.value)) {
          out.Gauge(s.rule->metric, s.value, s.labels);
        }
        break;
    }
  }
  counters_ = std::move(counters);
  histograms_ = std::move(histograms);
  return stats;
}

PrometheusCollector::PrometheusCollector(PrometheusCollectorOptions options) {
  for (PromTargetOptions& t : options.targets) {
    auto target = std::make_unique<Target>();
    target->options = std::move(t);
    target->converter = std::make_unique<PromTargetConverter>(&target->options);
    targets_.push_back(std::move(target));
  }
}

std::vector<v1::MetricDeclaration> PrometheusCollector::DeclaredMetrics() const {
  std::vector<v1::MetricDeclaration> out;
  for (const auto& t : targets_) {
    for (const auto& [family, rule] : t->options.families) {
      v1::MetricDeclaration d;
      d.set_name(rule.metric);
      d.set_kind(rule.type == PromType::kHistogram ? v1::MetricDeclaration::HISTOGRAM
                                                   : v1::MetricDeclaration::GAUGE);
      d.set_unit(UnitOf(rule));
      d.set_per_second_rate(rule.type == PromType::kCounter);
      d.set_help(absl::StrCat(
          PromTypeName(rule.type), " ", family, " scraped from ", t->options.name,
          rule.type == PromType::kCounter     ? ", as its per-second rate"
          : rule.type == PromType::kHistogram ? ", counts at bucket upper bounds"
                                              : ""));
      d.set_collector("prometheus");
      out.push_back(std::move(d));
    }
  }
  return out;
}

void PrometheusCollector::Collect(absl::Time now, Collection& out) {
  for (auto& t : targets_) {
    const PromTargetOptions& o = t->options;
    const absl::Time start = absl::Now();
    http::HttpClientOptions client;
    client.connect_timeout = o.timeout;
    client.timeout = o.timeout;
    client.max_response_bytes = o.max_bytes;
    client.headers = {{"Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1"}};
    absl::StatusOr<http::HttpClientResponse> response = http::HttpGet(o.url, client);
    if (response.ok() && response->status != 200) {
      response = absl::UnavailableError(absl::StrCat(o.url, ": HTTP status ", response->status));
    }
    PromRoundStats stats;
    if (!response.ok()) {
      t->converter->Reset();
      stats.error = std::string(response.status().message());
    } else {
      stats = t->converter->Convert(response->body, now, out);
    }
    stats.took = absl::Now() - start;
    if (stats.up != t->was_up) {
      if (stats.up) {
        spdlog::info("prometheus target {} ({}) is up", o.name, o.url);
      } else {
        spdlog::warn("prometheus target {} ({}) is down: {}", o.name, o.url, stats.error);
      }
      t->was_up = stats.up;
    }
    for (const std::string& family : stats.mismatched) {
      if (std::find(t->mismatched_logged.begin(), t->mismatched_logged.end(), family) ==
          t->mismatched_logged.end()) {
        spdlog::warn("prometheus target {}: family {} is not a {} in the scrape: left out",
                     o.name, family, std::string(PromTypeName(o.families.at(family).type)));
        t->mismatched_logged.push_back(family);
      }
    }
    const Labels target_label = {{"target", o.name}};
    out.Gauge("prometheus_up", stats.up ? 1 : 0, target_label);
    out.Gauge("prometheus_scrape_seconds", absl::ToDoubleSeconds(stats.took), target_label);
    out.Gauge("prometheus_series_dropped", static_cast<double>(stats.dropped), target_label);
    t->last = std::move(stats);
  }
}

std::vector<v1::DiagnosticTable> PrometheusCollector::Diagnose(
    absl::Time now, const std::vector<std::string>& names) {
  v1::DiagnosticTable table;
  table.set_name("prometheus_targets");
  for (const char* c : {"target", "url", "up", "scrape_ms", "bytes", "samples", "series",
                        "dropped", "parse_errors", "type_mismatch", "last_error"}) {
    table.add_columns(c);
  }
  table.set_collected_unix_ms(absl::ToUnixMillis(now));
  for (const auto& t : targets_) {
    const PromRoundStats& s = t->last;
    auto* row = table.add_rows();
    for (const std::string& cell :
         {t->options.name, t->options.url, std::string(s.up ? "1" : "0"),
          absl::StrCat(absl::ToInt64Milliseconds(s.took)), absl::StrCat(s.bytes),
          absl::StrCat(s.samples), absl::StrCat(s.series), absl::StrCat(s.dropped),
          absl::StrCat(s.parse_errors), absl::StrJoin(s.mismatched, " "), s.error.substr(0, 512)}) {
      row->add_cells(cell);
    }
  }
  return {table};
}

namespace {

absl::StatusOr<PromType> ConfigType(const YAML::Node& node, absl::string_view file,
                                    absl::string_view where) {
  const std::string text = node.IsScalar() ? node.Scalar() : "";
  for (PromType t :
       {PromType::kCounter, PromType::kGauge, PromType::kHistogram, PromType::kUntyped}) {
    if (text == PromTypeName(t)) return t;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      YamlWhere(file, node), ": ", where, ": type '", text.substr(0, 64),
      "' must be counter, gauge, histogram or untyped (summaries are not converted)"));
}

absl::StatusOr<std::vector<std::string>> LabelList(const YAML::Node& node, absl::string_view key,
                                                   absl::string_view file,
                                                   absl::string_view where) {
  ASSIGN_OR_RETURN(std::vector<std::string> labels, YamlStringList(node, key, file));
  for (const std::string& l : labels) {
    if (!IsPromLabelName(l) || l.size() > kMaxLabelKeyBytes || l == "le" || l == "target") {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, node[std::string(key)]), ": ", where, ".", key, ": '",
                       l.substr(0, 64), "' is not a label name one may keep (le and target are "
                       "the collector's own)"));
    }
  }
  return labels;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Collector>> NewPrometheusCollector(const YAML::Node& config,
                                                                  absl::string_view file) {
  RETURN_IF_ERROR(YamlCheckKeys(config, file, "collectors.prometheus", {"targets"}));
  const YAML::Node targets = config["targets"];
  if (!targets.IsSequence() || targets.size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        YamlWhere(file, targets.IsDefined() ? targets : config),
        ": collectors.prometheus.targets must be a list of {name, url, series}"));
  }
  PrometheusCollectorOptions options;
  std::set<std::string> names, metrics;
  for (size_t i = 0; i < targets.size(); ++i) {
    const YAML::Node node = targets[i];
    const std::string where = absl::StrCat("collectors.prometheus.targets[", i, "]");
    RETURN_IF_ERROR(YamlCheckKeys(node, file, where,
                                  {"name", "url", "timeout", "max_bytes", "max_series", "prefix",
                                   "labels", "series"}));
    PromTargetOptions t;
    ASSIGN_OR_RETURN(t.name, YamlString(node, "name", file, true));
    if (t.name.empty() || t.name.size() > 64 || !names.insert(t.name).second ||
        !std::all_of(t.name.begin(), t.name.end(), [](char c) {
          return absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.';
        })) {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, node["name"]), ": ", where, ".name '", t.name.substr(0, 64),
                       "' must be 1 to 64 of [A-Za-z0-9._-], unique among the targets"));
    }
    ASSIGN_OR_RETURN(t.url, YamlString(node, "url", file, true));
    if (absl::StatusOr<http::ParsedUrl> url = http::ParseHttpUrl(t.url); !url.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, node["url"]), ": ", where,
                                                     ".url: ", url.status().message()));
    }
    ASSIGN_OR_RETURN(t.timeout, YamlDuration(node, "timeout", file, t.timeout));
    if (t.timeout <= absl::ZeroDuration() || t.timeout > absl::Seconds(30)) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, node["timeout"]), ": ",
                                                     where, ".timeout must be in (0, 30s]"));
    }
    ASSIGN_OR_RETURN(int64_t max_bytes,
                     YamlInt(node, "max_bytes", file, static_cast<int64_t>(t.max_bytes), 1024,
                             int64_t{64} << 20));
    t.max_bytes = static_cast<size_t>(max_bytes);
    ASSIGN_OR_RETURN(int64_t max_series,
                     YamlInt(node, "max_series", file, static_cast<int64_t>(t.max_series), 1,
                             10'000));
    t.max_series = static_cast<size_t>(max_series);
    ASSIGN_OR_RETURN(std::string prefix, YamlString(node, "prefix", file));
    const bool target_labels = node["labels"].IsDefined();
    ASSIGN_OR_RETURN(std::vector<std::string> default_labels,
                     LabelList(node, "labels", file, where));
    const YAML::Node series = node["series"];
    if (!series.IsMap() || series.size() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, series.IsDefined() ? series : node), ": ", where,
                       ".series must map family names to a type (counter, gauge, histogram, "
                       "untyped) or to {type, labels}"));
    }
    for (const auto& kv : series) {
      ASSIGN_OR_RETURN(std::string family, YamlKey(kv.first, file, where));
      const std::string at = absl::StrCat(where, ".series.", family.substr(0, 128));
      PromFamilyRule rule;
      rule.family = family;
      rule.all_labels = !target_labels;
      rule.labels = default_labels;
      if (kv.second.IsMap()) {
        RETURN_IF_ERROR(YamlCheckKeys(kv.second, file, at, {"type", "labels"}));
        ASSIGN_OR_RETURN(rule.type, ConfigType(kv.second["type"], file, at));
        if (kv.second["labels"].IsDefined()) {
          rule.all_labels = false;
          ASSIGN_OR_RETURN(rule.labels, LabelList(kv.second, "labels", file, at));
        }
      } else {
        ASSIGN_OR_RETURN(rule.type, ConfigType(kv.second, file, at));
      }
      rule.metric = prefix + family;
      std::string why;
      if (!IsPromMetricName(family)) {
        why = "is not a metric family name";
      } else if (!IsPromMetricName(rule.metric) || rule.metric.size() > kMaxNameBytes) {
        why = absl::StrCat("gives '", rule.metric.substr(0, 160),
                           "', not a metric name of at most 128 bytes");
      } else if (FindMetric(rule.metric) != nullptr) {
        why = absl::StrCat("gives '", rule.metric, "', a name of the built-in schema");
      } else if (absl::string_view reserved = ReservedPrefixOf(rule.metric); !reserved.empty()) {
        why = absl::StrCat("gives '", rule.metric, "', under '", reserved,
                           "' which belongs to a built-in collector: set a prefix (app_, ...)");
      } else if (!metrics.insert(rule.metric).second) {
        why = absl::StrCat("gives '", rule.metric, "', which another family already gives");
      }
      if (!why.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(YamlWhere(file, kv.first), ": ", at, ": ", why));
      }
      t.families.emplace(family, std::move(rule));
    }
    options.targets.push_back(std::move(t));
  }
  if (metrics.size() > kMaxDeclared) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, targets), ": collectors.prometheus: ", metrics.size(),
                     " families in all, more than the ", kMaxDeclared, " an agent may declare"));
  }
  return std::make_unique<PrometheusCollector>(std::move(options));
}

}  // namespace vigil::agent
