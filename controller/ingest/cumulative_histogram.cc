#include "controller/ingest/cumulative_histogram.h"

#include <algorithm>
#include <vector>

namespace vigil::controller {

const std::array<double, CumulativeHistogram::kBounds>& CumulativeHistogram::Bounds() {
  // One decade a line.
  // clang-format off
  static constexpr std::array<double, kBounds> kList = {
      0.001, 0.0016, 0.0025, 0.004, 0.0063,
      0.01,  0.016,  0.025,  0.04,  0.063,
      0.1,   0.16,   0.25,   0.4,   0.63,
      1,     1.6,    2.5,    4,     6.3,
      10,    16,     25,     40,    63,
      100};
  // clang-format on
  return kList;
}

namespace {

// The coarse bucket of every fine bucket of the schema, kMinIndex first, computed once.
const uint8_t* CoarseTable() {
  static const std::vector<uint8_t>* const kTable = [] {
    auto* table = new std::vector<uint8_t>();
    table->reserve(LogHistogram::kMaxIndex - LogHistogram::kMinIndex + 1);
    const auto& bounds = CumulativeHistogram::Bounds();
    for (int i = LogHistogram::kMinIndex; i <= LogHistogram::kMaxIndex; ++i) {
      const double value = LogHistogram::BucketValue(i);
      table->push_back(static_cast<uint8_t>(std::lower_bound(bounds.begin(), bounds.end(), value) -
                                            bounds.begin()));
    }
    return table;
  }();
  return kTable->data();
}

// Fine bucket `index`'s entry of `table` (CoarseTable()), clamped to the schema.
size_t CoarseIn(const uint8_t* table, int index) {
  const int clamped = std::clamp(index, LogHistogram::kMinIndex, LogHistogram::kMaxIndex);
  return table[clamped - LogHistogram::kMinIndex];
}

}  // namespace

size_t CumulativeHistogram::CoarseBucket(int index) { return CoarseIn(CoarseTable(), index); }

void CumulativeHistogram::Add(const LogHistogram& h) {
  // The zero bucket holds observations at or below 1 microsecond: under the first bound.
  uint64_t added = h.zero_count();
  counts_[0] += h.zero_count();
  const std::vector<uint64_t>& fine = h.counts();
  // The table once per histogram, not per bucket (Add runs for every interval of every
  // histogram series: 50,000 a second at 10,000 agents).
  const uint8_t* coarse = CoarseTable();
  for (size_t i = 0; i < fine.size(); ++i) {
    if (fine[i] != 0) {
      counts_[CoarseIn(coarse, h.offset() + static_cast<int>(i))] += fine[i];
      added += fine[i];
    }
  }
  count_ += added;
  sum_ += h.sum();
}

}  // namespace vigil::controller
