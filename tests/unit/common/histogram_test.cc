#include "common/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace vigil {
namespace {

double ExactQuantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(q * v.size()));
  return v[rank == 0 ? 0 : rank - 1];
}

TEST(HistogramBucketsTest, GrowToKeepsEveryBucketWhereItWasInAnyWidth) {
  std::vector<uint16_t> counts;
  int offset = 0;
  buckets::GrowTo(counts, offset, 5);
  EXPECT_EQ(offset, 5);
  ASSERT_EQ(counts.size(), 1u);
  counts[0] = 7;
  buckets::GrowTo(counts, offset, 2);  // downwards: the old bucket 5 moves to slot 3
  EXPECT_EQ(offset, 2);
  ASSERT_EQ(counts.size(), 4u);
  EXPECT_EQ(counts[3], 7);
  buckets::GrowTo(counts, offset, 9);  // upwards
  EXPECT_EQ(offset, 2);
  EXPECT_EQ(counts.size(), 8u);
  buckets::GrowTo(counts, offset, 4);  // inside: nothing moves
  EXPECT_EQ(counts.size(), 8u);
  EXPECT_EQ(counts[3], 7);
}

TEST(HistogramBucketsTest, OccupiedSkipsEmptyEndsAndTrimPaysOnlyForRealSpare) {
  EXPECT_EQ(buckets::Occupied(std::vector<uint32_t>{0, 0, 3, 0, 4, 0}),
            (std::pair<size_t, size_t>{2, 5}));
  const auto [begin, end] = buckets::Occupied(std::vector<uint64_t>{0, 0, 0});
  EXPECT_EQ(begin, end);
  // Spare must exceed a quarter of what is used plus 8 buckets.
  EXPECT_FALSE(buckets::TrimPays(8, 0));
  EXPECT_TRUE(buckets::TrimPays(9, 0));
  EXPECT_FALSE(buckets::TrimPays(83, 60));  // 23 spare: 60 / 4 + 8 = 23
  EXPECT_TRUE(buckets::TrimPays(84, 60));
}

TEST(LogHistogramTest, QuantilesWithinOnePercentOnLogNormalLatencies) {
  std::mt19937 rng(42);
  std::lognormal_distribution<double> dist(-3.0, 1.2);  // ~50 ms median, long tail
  std::vector<double> values;
  LogHistogram h;
  for (int i = 0; i < 100000; ++i) {
    double v = dist(rng);
    values.push_back(v);
    h.Add(v);
  }
  for (double q : {0.5, 0.9, 0.95, 0.99, 0.999}) {
    double exact = ExactQuantile(values, q);
    EXPECT_NEAR(h.Quantile(q), exact, exact * LogHistogram::kRelativeAccuracy) << "q=" << q;
  }
  EXPECT_EQ(h.count(), 100000u);
}

TEST(LogHistogramTest, MergeEqualsSingleHistogramOverAllValues) {
  LogHistogram a, b, all;
  for (int i = 1; i <= 1000; ++i) {
    double v = i * 0.001;
    (i % 3 == 0 ? a : b).Add(v);
    all.Add(v);
  }
  b.Add(40.0);  // far above a's range: forces growth on merge
  all.Add(40.0);
  a.Merge(b);
  for (double q : {0.1, 0.5, 0.95, 1.0}) EXPECT_DOUBLE_EQ(a.Quantile(q), all.Quantile(q));
  EXPECT_EQ(a.count(), all.count());
  EXPECT_DOUBLE_EQ(a.sum(), all.sum());
}

TEST(LogHistogramTest, AddToBucketsEqualsAddingEachBucket) {
  LogHistogram bulk, one_by_one;
  bulk.Add(0.5, 3);
  one_by_one.Add(0.5, 3);
  const uint16_t narrow[] = {4, 0, 9, 1};
  bulk.AddToBuckets(-300, narrow, 4);  // below the range held: grows it downwards
  const uint64_t wide[] = {uint64_t{1} << 35, 2};
  bulk.AddToBuckets(600, wide, 2);  // above it
  const uint32_t straddling[] = {5, 6, 7};
  bulk.AddToBuckets(LogHistogram::kMaxIndex - 1, straddling, 3);  // the last is past the schema
  for (int i = 0; i < 4; ++i) one_by_one.AddToBucket(-300 + i, narrow[i]);
  for (int i = 0; i < 2; ++i) one_by_one.AddToBucket(600 + i, wide[i]);
  for (int i = 0; i < 3; ++i)
    one_by_one.AddToBucket(LogHistogram::kMaxIndex - 1 + i, straddling[i]);
  EXPECT_EQ(bulk.count(), one_by_one.count());
  EXPECT_EQ(bulk.count(), 3u + 14 + (uint64_t{1} << 35) + 2 + 5 + 6);
  for (double q : {0.0, 0.1, 0.5, 0.99, 1.0}) EXPECT_EQ(bulk.Quantile(q), one_by_one.Quantile(q));
}

TEST(LogHistogramTest, ProtoRoundTripAndMergeProto) {
  LogHistogram h;
  h.Add(0.0);    // zero bucket
  h.Add(0.25, 7);
  h.Add(3.5);
  v1::Histogram wire;
  h.ToProto(&wire);
  LogHistogram back;
  back.FromProto(wire);
  EXPECT_EQ(back.count(), 9u);
  EXPECT_DOUBLE_EQ(back.Quantile(0.5), h.Quantile(0.5));
  back.MergeProto(wire);
  EXPECT_EQ(back.count(), 18u);
  EXPECT_DOUBLE_EQ(back.Quantile(0.0), 0.0);
}

TEST(LogHistogramTest, MalformedProtoCannotInflateCount) {
  v1::Histogram wire;
  wire.set_offset(10);
  wire.add_counts(2);
  wire.set_count(1'000'000);  // lies about the total
  LogHistogram h;
  h.FromProto(wire);
  EXPECT_EQ(h.count(), 2u);
}

// FromProto refuses exactly what CheckProto refuses and is left empty, whatever it held (the
// controller decodes every histogram point into one reused per thread).
TEST(LogHistogramTest, FromProtoRefusesWhatCheckProtoRefusesAndIsLeftEmpty) {
  auto wire = [](int offset, std::vector<uint64_t> counts, uint64_t zero, double sum) {
    v1::Histogram w;
    w.set_offset(offset);
    for (uint64_t c : counts) w.add_counts(c);
    w.set_zero_count(zero);
    w.set_sum(sum);
    return w;
  };
  const uint64_t max = LogHistogram::kMaxCount;
  const std::vector<v1::Histogram> refused = {
      wire(LogHistogram::kMinIndex - 1, {1}, 0, 1),
      wire(LogHistogram::kMaxIndex, {1, 1}, 0, 1),
      wire(0, {1}, max + 1, 1),
      wire(0, {max, 1}, 0, 1),
      wire(0, {1, max}, 1, 1),
      wire(0, {1}, 0, std::nan("")),
      wire(0, {1}, 0, -1),
      wire(0, {1}, 0, std::numeric_limits<double>::infinity()),
  };
  for (size_t i = 0; i < refused.size(); ++i) {
    ASSERT_FALSE(LogHistogram::CheckProto(refused[i]).ok()) << i;
    LogHistogram h;
    h.Add(0.5, 5);
    EXPECT_FALSE(h.FromProto(refused[i])) << i;
    EXPECT_TRUE(h.empty()) << i;
    EXPECT_TRUE(h.counts().empty()) << i;
    EXPECT_EQ(h.zero_count(), 0u) << i;
    EXPECT_EQ(h.sum(), 0.0) << i;
  }
  // What it accepts, it holds exactly as a merge into an empty histogram would, at the edges of
  // the schema and of the count too.
  const std::vector<v1::Histogram> accepted = {
      wire(LogHistogram::kMinIndex, {3, 0, 4}, 2, 1.5),
      wire(LogHistogram::kMaxIndex - 1, {0, 9}, 0, 0),
      wire(0, {max - 1}, 1, 7),
      wire(5, {}, 4, 0),
  };
  for (size_t i = 0; i < accepted.size(); ++i) {
    ASSERT_TRUE(LogHistogram::CheckProto(accepted[i]).ok()) << i;
    LogHistogram copied;
    copied.Add(2.0, 3);
    ASSERT_TRUE(copied.FromProto(accepted[i])) << i;
    LogHistogram merged;
    ASSERT_TRUE(merged.MergeProto(accepted[i])) << i;
    EXPECT_EQ(copied.counts(), merged.counts()) << i;
    EXPECT_EQ(copied.offset(), merged.offset()) << i;
    EXPECT_EQ(copied.zero_count(), merged.zero_count()) << i;
    EXPECT_EQ(copied.count(), merged.count()) << i;
    EXPECT_EQ(copied.sum(), merged.sum()) << i;
  }
}

TEST(LogHistogramTest, IgnoresNegativeAndNaN) {
  LogHistogram h;
  h.Add(-1);
  h.Add(std::nan(""));
  EXPECT_TRUE(h.empty());
  EXPECT_EQ(h.Quantile(0.95), 0.0);
}

}  // namespace
}  // namespace vigil
