#include "agent/series_dictionary.h"

#include <algorithm>

namespace vigil::agent {

uint32_t SeriesDictionary::IdFor(const std::string& name, const Labels& labels,
                                 v1::TelemetryBatch* batch) {
  // '\0' cannot appear in a metric name or a YAML label, so the key is unambiguous.
  key_.assign(name);
  for (const auto& [k, v] : labels) {
    key_.push_back('\0');
    key_.append(k);
    key_.push_back('\0');
    key_.append(v);
  }
  auto [it, inserted] = ids_.try_emplace(key_, next_id_);
  if (inserted) {
    ++next_id_;
    v1::SeriesDefinition* def = batch->add_new_series();
    def->set_id(it->second);
    def->set_name(name);
    for (const auto& [k, v] : labels) {
      (*def->mutable_labels())[k] = v;
    }
  }
  return it->second;
}

void SeriesDictionary::Encode(const Collection& collection, v1::TelemetryBatch* batch) {
  v1::Snapshot* snapshot = batch->add_snapshots();
  snapshot->set_time_unix_ms(absl::ToUnixMillis(collection.time));
  snapshot->mutable_series_ids()->Reserve(static_cast<int>(collection.gauges.size()));
  snapshot->mutable_values()->Reserve(static_cast<int>(collection.gauges.size()));
  for (const GaugePoint& g : collection.gauges) {
    snapshot->add_series_ids(IdFor(g.name, g.labels, batch));
    snapshot->add_values(g.value);
  }
  for (const HistogramPoint& h : collection.histograms) {
    v1::HistogramPoint* point = snapshot->add_histograms();
    point->set_series_id(IdFor(h.name, h.labels, batch));
    h.histogram.ToProto(point->mutable_histogram());
  }
}

void SeriesDictionary::Translate(const v1::TelemetryBatch& contained, v1::TelemetryBatch* out) {
  std::unordered_map<uint32_t, uint32_t> ids;
  Labels labels;
  for (const v1::SeriesDefinition& def : contained.new_series()) {
    labels.clear();
    for (const auto& [k, v] : def.labels()) {
      labels[k] = v;
    }
    ids[def.id()] = IdFor(def.name(), labels, out);
  }
  for (const v1::Snapshot& in : contained.snapshots()) {
    v1::Snapshot* snapshot = out->add_snapshots();
    snapshot->set_time_unix_ms(in.time_unix_ms());
    const int n = std::min(in.series_ids_size(), in.values_size());
    for (int i = 0; i < n; ++i) {
      auto it = ids.find(in.series_ids(i));
      if (it != ids.end()) {
        snapshot->add_series_ids(it->second);
        snapshot->add_values(in.values(i));
      }
    }
    for (const v1::HistogramPoint& h : in.histograms()) {
      auto it = ids.find(h.series_id());
      if (it != ids.end()) {
        v1::HistogramPoint* point = snapshot->add_histograms();
        point->set_series_id(it->second);
        *point->mutable_histogram() = h.histogram();
      }
    }
  }
}

}  // namespace vigil::agent
