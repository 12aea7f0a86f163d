#include "bench/loadgen/latency_stats.h"

#include <gtest/gtest.h>

namespace vigil::loadgen {
namespace {

TEST(NearestRankTest, PicksTheSmallestValueCoveringTheShare) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) {
    v.push_back(i);
  }
  EXPECT_EQ(NearestRank(v, 0.5), 50);
  EXPECT_EQ(NearestRank(v, 0.99), 99);
  EXPECT_EQ(NearestRank(v, 1.0), 100);
  EXPECT_EQ(NearestRank(v, 0.0), 1);
  EXPECT_EQ(v.front(), 100) << "the caller's order is kept";
}

TEST(NearestRankTest, OneSlowCallInAHundredIsTheP99) {
  std::vector<double> v(99, 10.0);
  v.push_back(5000);
  EXPECT_EQ(NearestRank(v, 0.99), 10);
  v.push_back(5000);
  EXPECT_EQ(NearestRank(v, 0.99), 5000);
}

TEST(NearestRankTest, EmptyIsZero) { EXPECT_EQ(NearestRank({}, 0.99), 0); }

}  // namespace
}  // namespace vigil::loadgen
