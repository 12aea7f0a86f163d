#include "common/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace vigil {
namespace {

double ExactQuantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(q * v.size()));
  return v[rank == 0 ? 0 : rank - 1];
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

TEST(LogHistogramTest, IgnoresNegativeAndNaN) {
  LogHistogram h;
  h.Add(-1);
  h.Add(std::nan(""));
  EXPECT_TRUE(h.empty());
  EXPECT_EQ(h.Quantile(0.95), 0.0);
}

}  // namespace
}  // namespace vigil
