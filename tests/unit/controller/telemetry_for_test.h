// Building telemetry batches in controller tests: shared by ingest_test and fleet_exposition_test.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "vigil/v1/telemetry.pb.h"

namespace vigil::controller {

// Adds a series definition (id, name, labels) to `batch`.
inline void Define(v1::TelemetryBatch& batch, uint32_t id, const std::string& name,
                   const std::map<std::string, std::string>& labels = {}) {
  v1::SeriesDefinition* def = batch.add_new_series();
  def->set_id(id);
  def->set_name(name);
  for (const auto& [k, v] : labels) {
    (*def->mutable_labels())[k] = v;
  }
}

}  // namespace vigil::controller
