// Per-stream series dictionary: each (metric name, labels) is declared once on a stream and then
// sent as a small integer id. A new stream starts a new dictionary. Not thread-safe: owned by the
// stream's sending thread.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

#include "agent/collector.h"
#include "vigil/v1/telemetry.pb.h"

namespace vigil::agent {

class SeriesDictionary {
 public:
  // Appends one snapshot for `collection` to `batch`, declaring series first used here in
  // batch->new_series.
  void Encode(const Collection& collection, v1::TelemetryBatch* batch);

  // Appends the snapshots of `contained` (a batch that declares all of its own series, as the
  // spool stores them) to `out`, renumbered with this stream's ids and declaring series first
  // used here. Values of series `contained` does not declare are left out.
  void Translate(const v1::TelemetryBatch& contained, v1::TelemetryBatch* out);

  // Forgets every declaration (the next stream declares again).
  void Reset() {
    ids_.clear();
    next_id_ = 1;
  }
  size_t size() const { return ids_.size(); }

 private:
  uint32_t IdFor(const std::string& name, const Labels& labels, v1::TelemetryBatch* batch);

  std::unordered_map<std::string, uint32_t> ids_;  // canonical key -> id
  uint32_t next_id_ = 1;
  std::string key_;  // scratch buffer, reused to avoid an allocation per sample
};

}  // namespace vigil::agent
