// A mergeable log-scale histogram (DDSketch-style buckets) with relative error <= 1 %.
// Agents fill it; the controller merges many of them and derives exact-to-the-bucket
// percentiles fleet-wide. Not thread-safe: one owner at a time.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "vigil/v1/telemetry.pb.h"

namespace vigil {

// The q-quantile (0 <= q <= 1, clamped) of `count` observations, `zero_count` of them in the zero
// bucket and the rest in buckets offset + i holding counts[i] (i < n), as "nearest rank" on the
// sorted values: LogHistogram's rule, shared with windows that keep their counts in other widths.
// 0 when count is 0.
template <typename Count>
double QuantileOfBuckets(const Count* counts, size_t n, int offset, uint64_t zero_count,
                         uint64_t count, double q);

// Bucket vectors as LogHistogram keeps them (bucket offset + i holds counts[i]), whatever the
// count's width: shared with the controller's running windows, which keep narrower counts.
namespace buckets {
// Makes room for bucket `index` in `counts`, whose first bucket is `offset` (moved when the
// buckets grow downwards, or set when they were empty).
template <typename Count>
void GrowTo(std::vector<Count>& counts, int& offset, int index);
// [begin, end) of `counts` without its empty buckets at both ends; begin == end when all are.
template <typename Count>
std::pair<size_t, size_t> Occupied(const std::vector<Count>& counts);
// Whether `used` buckets in a vector of `capacity` leave enough spare (more than a quarter of
// what is used plus 8 buckets) to be worth a reallocation that drops it.
inline bool TrimPays(size_t capacity, size_t used) { return (capacity - used) * 4 > used + 32; }
}  // namespace buckets

class LogHistogram {
 public:
  // Relative accuracy of every quantile estimate, and the bucket growth factor it implies.
  static constexpr double kRelativeAccuracy = 0.01;
  static constexpr double kGamma = (1 + kRelativeAccuracy) / (1 - kRelativeAccuracy);
  // Observations at or below this go to the zero bucket (1 microsecond for latencies).
  static constexpr double kMinValue = 1e-6;
  // The schema's bucket range: indexes outside it are never produced (Add clamps to it; gamma^2048
  // is about 6e17) and never accepted from the wire, so no offset arithmetic can overflow.
  static constexpr int kMinIndex = -2048;
  static constexpr int kMaxIndex = 2048;
  // Observations one histogram may carry, so that merging 2^24 of them cannot overflow.
  static constexpr uint64_t kMaxCount = uint64_t{1} << 40;

  void Add(double value, uint64_t n = 1);
  void Merge(const LogHistogram& other);
  void Clear();

  uint64_t count() const { return count_; }
  double sum() const { return sum_; }
  bool empty() const { return count_ == 0; }

  // The q-quantile (0 <= q <= 1) within kRelativeAccuracy; 0 when empty.
  double Quantile(double q) const;

  void ToProto(v1::Histogram* out) const;
  // InvalidArgument, prefixed with `field`, unless `in` stays inside the schema: buckets within
  // [kMinIndex, kMaxIndex], at most kMaxCount observations, a finite non-negative sum.
  static absl::Status CheckProto(const v1::Histogram& in, absl::string_view field = "histogram");
  // Replaces the contents with `in`; false (and empty) when CheckProto refuses it.
  bool FromProto(const v1::Histogram& in);
  // Adds `in` without materialising a second histogram; false (and unchanged) when CheckProto
  // refuses it.
  bool MergeProto(const v1::Histogram& in);
  // Memory the buckets hold, for budgets.
  size_t bucket_bytes() const { return counts_.capacity() * sizeof(uint64_t); }

  // Bucket-level access, for compact encodings and running windows: bucket offset() + i holds
  // counts()[i]; observations at or below kMinValue are in zero_count().
  int offset() const { return offset_; }
  const std::vector<uint64_t>& counts() const { return counts_; }
  uint64_t zero_count() const { return zero_count_; }
  // Adds n observations to bucket `index` (ignored outside [kMinIndex, kMaxIndex]) or to the
  // zero bucket. The sum is left alone: windows built this way answer quantiles and counts.
  void AddToBucket(int index, uint64_t n);
  void AddToZero(uint64_t n);
  // Adds counts[i] to bucket offset + i for i < n, growing the buckets once: a merge from buckets
  // kept in another width (a running window's). Buckets outside the schema are ignored.
  template <typename Count>
  void AddToBuckets(int offset, const Count* counts, size_t n);
  // Takes back observations an earlier add put there; a count never goes below zero.
  void RemoveFromBucket(int index, uint64_t n);
  void RemoveFromZero(uint64_t n);
  // Takes back a histogram merged earlier: Merge(x) then Subtract(x) leaves every count as it
  // was (the sum up to rounding).
  void Subtract(const LogHistogram& other);
  // Drops empty buckets at both ends and spare capacity once they exceed a quarter of the
  // occupied range: a running merge that slides along stays the size of its content.
  void Trim();

  static int BucketIndex(double value);
  static double BucketValue(int index);

 private:
  void Grow(int index);

  int offset_ = 0;  // bucket index of counts_[0]
  std::vector<uint64_t> counts_;
  uint64_t zero_count_ = 0;
  uint64_t count_ = 0;
  double sum_ = 0;
};

template <typename Count>
double QuantileOfBuckets(const Count* counts, size_t n, int offset, uint64_t zero_count,
                         uint64_t count, double q) {
  if (count == 0) {
    return 0;
  }
  q = std::clamp(q, 0.0, 1.0);
  // Rank of the wanted observation, 0-based. Clamped in double before the cast: near 2^64
  // observations q * count rounds past the range.
  const double wanted = std::ceil(q * static_cast<double>(count));
  uint64_t rank = wanted >= static_cast<double>(count) ? count : static_cast<uint64_t>(wanted);
  if (rank > 0) {
    --rank;
  }
  if (rank < zero_count) {
    return 0;
  }
  uint64_t seen = zero_count;
  for (size_t i = 0; i < n; ++i) {
    seen += counts[i];
    if (seen > rank) {
      return LogHistogram::BucketValue(offset + static_cast<int>(i));
    }
  }
  return LogHistogram::BucketValue(offset + static_cast<int>(n) - 1);
}

namespace buckets {

template <typename Count>
void GrowTo(std::vector<Count>& counts, int& offset, int index) {
  if (counts.empty()) {
    offset = index;
    counts.assign(1, 0);
  } else if (index < offset) {
    counts.insert(counts.begin(), static_cast<size_t>(offset - index), 0);
    offset = index;
  } else if (index >= offset + static_cast<int>(counts.size())) {
    counts.resize(static_cast<size_t>(index - offset) + 1, 0);
  }
}

template <typename Count>
std::pair<size_t, size_t> Occupied(const std::vector<Count>& counts) {
  size_t begin = 0, end = counts.size();
  while (begin < end && counts[begin] == 0) {
    ++begin;
  }
  while (end > begin && counts[end - 1] == 0) {
    --end;
  }
  return {begin, end};
}

}  // namespace buckets

template <typename Count>
void LogHistogram::AddToBuckets(int offset, const Count* counts, size_t n) {
  if (n == 0) {
    return;
  }
  const int64_t last = int64_t{offset} + static_cast<int64_t>(n) - 1;
  if (offset < kMinIndex || last > kMaxIndex) {
    for (size_t i = 0; i < n; ++i) {
      AddToBucket(offset + static_cast<int>(i), counts[i]);
    }
    return;
  }
  Grow(offset);
  Grow(static_cast<int>(last));
  uint64_t* to = counts_.data() + (offset - offset_);
  uint64_t added = 0;
  for (size_t i = 0; i < n; ++i) {
    to[i] += counts[i];
    added += counts[i];
  }
  count_ += added;
}

}  // namespace vigil
