// Observation counts of one histogram series since the controller first saw it, in the fleet
// endpoint's buckets: Vigil's log buckets coarsened to one fixed `le` list, the same for every
// agent and every histogram, so that Prometheus can `sum by (le)` across the fleet.
// Not thread-safe: guarded like the series that holds it (its agent's mutex in FleetState).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "common/histogram.h"

namespace vigil::controller {

class CumulativeHistogram {
 public:
  // The finite upper bounds (`le`), increasing: the preferred numbers 1, 1.6, 2.5, 4, 6.3 of
  // every decade from 1 ms to 100 s (consecutive bounds at most 1.6 apart). A fine bucket goes to
  // the first bound at or above its representative value, so an observation within 1 % of a
  // bound (Vigil's own resolution) may be counted on either side of it.
  static constexpr size_t kBounds = 26;
  static const std::array<double, kBounds>& Bounds();
  // The coarse bucket of fine bucket `index` of LogHistogram: 0..kBounds-1 for a finite bound,
  // kBounds above the last one. Indexes outside the schema are clamped to it.
  static size_t CoarseBucket(int index);

  // Adds every observation of `h` (its buckets, zero bucket and sum).
  void Add(const LogHistogram& h);

  // Observations per coarse bucket (not cumulative); counts()[kBounds] is above the last bound.
  const std::array<uint64_t, kBounds + 1>& counts() const { return counts_; }
  // The sum of counts(): the `+Inf` bucket and `_count` are the same number by construction.
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::array<uint64_t, kBounds + 1> counts_ = {};
  uint64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace vigil::controller
