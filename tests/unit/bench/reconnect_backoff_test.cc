#include "bench/loadgen/reconnect_backoff.h"

#include <gtest/gtest.h>

#include <random>

namespace vigil::loadgen {
namespace {

TEST(ParseRetryAfterMsTest, TakesDecimalMilliseconds) {
  EXPECT_EQ(ParseRetryAfterMs("0"), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfterMs("250"), absl::Milliseconds(250));
  EXPECT_EQ(ParseRetryAfterMs("000120"), absl::Milliseconds(120));
}

TEST(ParseRetryAfterMsTest, RefusesWhatIsNotACount) {
  for (const char* bad : {"", "-5", "+5", " 5", "5 ", "1.5", "5ms", "0x10", "9999999999999"}) {
    EXPECT_FALSE(ParseRetryAfterMs(bad).has_value()) << bad;
  }
}

TEST(ParseRetryAfterMsTest, ClampsLongHints) {
  EXPECT_EQ(ParseRetryAfterMs("999999999999"), kMaxRetryAfter);
  EXPECT_EQ(ParseRetryAfterMs("300001"), kMaxRetryAfter);
  EXPECT_EQ(ParseRetryAfterMs("299999"), absl::Milliseconds(299999));
}

TEST(ReconnectBackoffTest, FullJitterDoublingUpToTheMaximum) {
  ReconnectBackoff backoff(absl::Milliseconds(100), absl::Seconds(1));
  std::mt19937_64 rng(1);
  const absl::Duration bounds[] = {absl::Milliseconds(100), absl::Milliseconds(200),
                                   absl::Milliseconds(400), absl::Milliseconds(800),
                                   absl::Seconds(1),        absl::Seconds(1)};
  for (absl::Duration bound : bounds) {
    EXPECT_EQ(backoff.current(), bound);
    const absl::Duration wait = backoff.Next(absl::ZeroDuration(), rng);
    EXPECT_GE(wait, absl::ZeroDuration());
    EXPECT_LE(wait, bound);
  }
}

TEST(ReconnectBackoffTest, JitterSpreadsOverTheWholeRange) {
  // Full jitter: over many draws both halves of [0, 1 s] are used, so a fleet does not return
  // in lockstep.
  std::mt19937_64 rng(7);
  int low = 0, high = 0;
  for (int i = 0; i < 1000; ++i) {
    ReconnectBackoff backoff(absl::Seconds(1), absl::Seconds(1));
    const absl::Duration wait = backoff.Next(absl::ZeroDuration(), rng);
    (wait < absl::Milliseconds(500) ? low : high)++;
  }
  EXPECT_GT(low, 400);
  EXPECT_GT(high, 400);
}

TEST(ReconnectBackoffTest, HintIsWaitedOnTopOfTheJitter) {
  ReconnectBackoff backoff(absl::Milliseconds(100), absl::Seconds(1));
  std::mt19937_64 rng(3);
  for (int i = 0; i < 100; ++i) {
    backoff.Reset();
    const absl::Duration wait = backoff.Next(absl::Milliseconds(2000), rng);
    EXPECT_GE(wait, absl::Milliseconds(2000));
    EXPECT_LE(wait, absl::Milliseconds(2100));
  }
}

TEST(ReconnectBackoffTest, ResetAfterAWelcome) {
  ReconnectBackoff backoff(absl::Milliseconds(100), absl::Seconds(1));
  std::mt19937_64 rng(5);
  for (int i = 0; i < 5; ++i) {
    backoff.Next(absl::ZeroDuration(), rng);
  }
  EXPECT_EQ(backoff.current(), absl::Seconds(1));
  backoff.Reset();
  EXPECT_EQ(backoff.current(), absl::Milliseconds(100));
}

}  // namespace
}  // namespace vigil::loadgen
