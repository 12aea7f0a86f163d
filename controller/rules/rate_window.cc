#include "controller/rules/rate_window.h"

#include <algorithm>

namespace vigil::controller {
namespace {

size_t Slot(int64_t epoch) {
  const int64_t n = RateWindow::kBuckets;
  return static_cast<size_t>(((epoch % n) + n) % n);
}

}  // namespace

RateWindow::RateWindow(int64_t range_ms)
    : range_ms_(range_ms), width_ms_(std::max<int64_t>(1, range_ms / kBuckets)) {}

int64_t RateWindow::Epoch(int64_t ms) const {
  int64_t e = ms / width_ms_;
  if (ms % width_ms_ < 0) {
    --e;
  }
  return e;
}

bool RateWindow::Add(int64_t ms, double value) {
  const int64_t e = Epoch(ms);
  if (head_ == INT64_MIN || e - head_ >= kBuckets) {
    // Empty, or every bucket is older than the new one's window: start afresh.
    sums_.fill(0);
    counts_.fill(0);
    head_ = e;
  } else if (e > head_) {
    for (int64_t cleared = head_ + 1; cleared <= e; ++cleared) {
      sums_[Slot(cleared)] = 0;
      counts_[Slot(cleared)] = 0;
    }
    head_ = e;
  } else if (head_ - e >= kBuckets) {
    return false;  // older than the ring
  }
  sums_[Slot(e)] += value;
  ++counts_[Slot(e)];
  newest_ms_ = std::max(newest_ms_, ms);
  return true;
}

bool RateWindow::Average(int64_t now_ms, double* out) const {
  if (head_ == INT64_MIN) {
    return false;
  }
  // Buckets after now's window start that the ring still holds: (now - kBuckets, head].
  const int64_t first = std::max(Epoch(now_ms) - kBuckets + 1, head_ - kBuckets + 1);
  double sum = 0;
  uint64_t count = 0;
  // One division for the first bucket, then a walk round the ring (this runs for every member
  // of a fleet-wide rule at every evaluation).
  size_t i = first <= head_ ? Slot(first) : 0;
  for (int64_t e = first; e <= head_; ++e) {
    sum += sums_[i];
    count += counts_[i];
    i = i + 1 == static_cast<size_t>(kBuckets) ? 0 : i + 1;
  }
  if (count == 0) {
    return false;
  }
  *out = sum / static_cast<double>(count);
  return true;
}

}  // namespace vigil::controller
