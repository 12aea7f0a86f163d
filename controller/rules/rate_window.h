// The average of a per-second-rate series over the last `range` (rate(x[r]) in a rule), in
// bounded memory whatever the range and the sample rate: a ring of kBuckets time buckets of
// range / kBuckets each, holding the sum and the count of the samples measured in it.
//
// Per sample, not time-weighted: every sample is already the rate over one collection interval,
// and an agent's interval is fixed by its configuration, so each sample stands for the same
// length of time and their plain mean is the time-weighted mean. A round the agent missed (a
// gap) is left out rather than read as zero: it is missing data, not an idle interval.
//
// Resolution: the window ends at the bucket holding `now` and reaches back kBuckets buckets, so
// it covers between (kBuckets - 1) / kBuckets of the range and the whole range (at most
// range / 30 short at its old end: 10 s of a 5 m range). It never counts a sample older than the
// range. Samples arriving late or out of order land in their own bucket while it is still in
// the ring; older ones are ignored.
// Not thread-safe: the rule engine holds one per (series, range) under its own lock.
#pragma once

#include <array>
#include <cstdint>

namespace vigil::controller {

class RateWindow {
 public:
  static constexpr int kBuckets = 30;

  // `range_ms` > 0.
  explicit RateWindow(int64_t range_ms);

  int64_t range_ms() const { return range_ms_; }
  // Adds a sample measured at `ms`. False (nothing changed) when it is older than the ring.
  bool Add(int64_t ms, double value);
  // The mean of the samples within the range ending at `now_ms`; false when there are none.
  bool Average(int64_t now_ms, double* out) const;
  // Time of the newest sample added; 0 when none.
  int64_t newest_ms() const { return newest_ms_; }

 private:
  int64_t Epoch(int64_t ms) const;  // the bucket number of time `ms` (floor division)

  int64_t range_ms_;
  int64_t width_ms_;          // range / kBuckets, at least 1 ms
  int64_t head_ = INT64_MIN;  // newest bucket number in the ring; INT64_MIN: empty
  int64_t newest_ms_ = 0;
  std::array<double, kBuckets> sums_{};
  std::array<uint32_t, kBuckets> counts_{};
};

}  // namespace vigil::controller
