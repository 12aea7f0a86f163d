#include "agent/series_dictionary.h"

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

}  // namespace vigil::agent
