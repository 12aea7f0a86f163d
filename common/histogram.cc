#include "common/histogram.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace vigil {
namespace {
const double kLogGamma = std::log(LogHistogram::kGamma);
}  // namespace

int LogHistogram::BucketIndex(double value) {
  const double index = std::ceil(std::log(value) / kLogGamma);
  // Clamped before the cast: log(+Inf) or a denormal would otherwise overflow the int.
  return static_cast<int>(
      std::clamp(index, static_cast<double>(kMinIndex), static_cast<double>(kMaxIndex)));
}

double LogHistogram::BucketValue(int index) {
  // The point of (gamma^(i-1), gamma^i] whose relative distance to both ends is kRelativeAccuracy.
  return 2.0 * std::pow(kGamma, index) / (kGamma + 1.0);
}

void LogHistogram::Grow(int index) { buckets::GrowTo(counts_, offset_, index); }

void LogHistogram::Add(double value, uint64_t n) {
  if (!(value >= 0) || std::isinf(value) || n == 0) return;  // drops NaN, infinities, negatives
  count_ += n;
  sum_ += value * static_cast<double>(n);
  if (value <= kMinValue) {
    zero_count_ += n;
    return;
  }
  int index = BucketIndex(value);
  if (counts_.empty() || index < offset_ || index >= offset_ + static_cast<int>(counts_.size())) {
    Grow(index);
  }
  counts_[static_cast<size_t>(index - offset_)] += n;
}

void LogHistogram::Merge(const LogHistogram& other) {
  if (other.count_ == 0) return;
  count_ += other.count_;
  sum_ += other.sum_;
  zero_count_ += other.zero_count_;
  if (other.counts_.empty()) return;
  Grow(other.offset_);
  Grow(other.offset_ + static_cast<int>(other.counts_.size()) - 1);
  for (size_t i = 0; i < other.counts_.size(); ++i) {
    counts_[static_cast<size_t>(other.offset_ - offset_) + i] += other.counts_[i];
  }
}

void LogHistogram::AddToBucket(int index, uint64_t n) {
  if (n == 0 || index < kMinIndex || index > kMaxIndex) return;
  if (counts_.empty() || index < offset_ || index >= offset_ + static_cast<int>(counts_.size())) {
    Grow(index);
  }
  counts_[static_cast<size_t>(index - offset_)] += n;
  count_ += n;
}

void LogHistogram::AddToZero(uint64_t n) {
  zero_count_ += n;
  count_ += n;
}

void LogHistogram::RemoveFromBucket(int index, uint64_t n) {
  if (counts_.empty() || index < offset_ || index >= offset_ + static_cast<int>(counts_.size())) {
    return;
  }
  uint64_t& c = counts_[static_cast<size_t>(index - offset_)];
  n = std::min(n, c);
  c -= n;
  count_ -= std::min(n, count_);
}

void LogHistogram::RemoveFromZero(uint64_t n) {
  n = std::min(n, zero_count_);
  zero_count_ -= n;
  count_ -= std::min(n, count_);
}

void LogHistogram::Subtract(const LogHistogram& other) {
  RemoveFromZero(other.zero_count_);
  for (size_t i = 0; i < other.counts_.size(); ++i) {
    RemoveFromBucket(other.offset_ + static_cast<int>(i), other.counts_[i]);
  }
  sum_ = count_ == 0 ? 0 : std::max(0.0, sum_ - other.sum_);
}

void LogHistogram::Trim() {
  const auto [begin, end] = buckets::Occupied(counts_);
  const size_t used = end - begin;
  if (!buckets::TrimPays(counts_.capacity(), used)) return;
  std::vector<uint64_t> trimmed(counts_.begin() + static_cast<std::ptrdiff_t>(begin),
                                counts_.begin() + static_cast<std::ptrdiff_t>(end));
  offset_ = used == 0 ? 0 : offset_ + static_cast<int>(begin);
  counts_ = std::move(trimmed);
}

void LogHistogram::Clear() {
  counts_.clear();
  offset_ = 0;
  zero_count_ = count_ = 0;
  sum_ = 0;
}

double LogHistogram::Quantile(double q) const {
  return QuantileOfBuckets(counts_.data(), counts_.size(), offset_, zero_count_, count_, q);
}

void LogHistogram::ToProto(v1::Histogram* out) const {
  out->Clear();
  // Trim empty buckets at both ends so the wire carries only the occupied range.
  const auto [begin, end] = buckets::Occupied(counts_);
  out->set_offset(offset_ + static_cast<int>(begin));
  for (size_t i = begin; i < end; ++i) out->add_counts(counts_[i]);
  out->set_zero_count(zero_count_);
  out->set_sum(sum_);
  out->set_count(count_);
}

absl::Status LogHistogram::CheckProto(const v1::Histogram& in, absl::string_view field) {
  const int64_t first = in.offset();
  const int64_t last = first + in.counts_size() - 1;
  if (in.counts_size() > 0 && (first < kMinIndex || last > kMaxIndex)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": buckets ", first, "..", last,
                                                   " lie outside the schema's range ", kMinIndex,
                                                   "..", kMaxIndex));
  }
  uint64_t total = in.zero_count();
  if (total > kMaxCount) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".zero_count ", total, " exceeds ", kMaxCount));
  }
  for (int i = 0; i < in.counts_size(); ++i) {
    if (in.counts(i) > kMaxCount - total) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".counts: more than ", kMaxCount, " observations in one histogram"));
    }
    total += in.counts(i);
  }
  if (!std::isfinite(in.sum()) || in.sum() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".sum ", in.sum(), " is not a finite non-negative number"));
  }
  return absl::OkStatus();
}

bool LogHistogram::FromProto(const v1::Histogram& in) {
  Clear();
  return MergeProto(in);
}

bool LogHistogram::MergeProto(const v1::Histogram& in) {
  if (!CheckProto(in).ok()) {
    return false;
  }
  const size_t n = static_cast<size_t>(in.counts_size());
  uint64_t bucket_total = in.zero_count();
  if (n > 0) {
    Grow(in.offset());
    Grow(in.offset() + static_cast<int>(n) - 1);
    for (size_t i = 0; i < n; ++i) {
      counts_[static_cast<size_t>(in.offset() - offset_) + i] += in.counts(static_cast<int>(i));
      bucket_total += in.counts(static_cast<int>(i));
    }
  }
  zero_count_ += in.zero_count();
  // Trust the buckets over the declared count, so a malformed message cannot skew quantiles.
  count_ += bucket_total;
  sum_ += in.sum();
  return true;
}

}  // namespace vigil
