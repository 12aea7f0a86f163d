// Sessions: random ids, idle and absolute expiry, the cap dropping the session unused longest;
// the sign-in limit per peer and its window, on a simulated clock.
#include "controller/review/sessions.h"

#include <gtest/gtest.h>

#include <set>

#include "common/clock.h"

namespace vigil::controller::review {
namespace {

TEST(Sessions, IdsAreRandom256BitHex) {
  SimulatedClock clock;
  SessionStore store({}, &clock);
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i) {
    Session s = store.Create("alice", "viewer", "h");
    EXPECT_EQ(s.id.size(), 64u);
    EXPECT_EQ(s.id.find_first_not_of("0123456789abcdef"), std::string::npos);
    ids.insert(s.id);
  }
  EXPECT_EQ(ids.size(), 100u);
  EXPECT_EQ(store.size(), 100u);
}

TEST(Sessions, UseFindsLiveSessionsOnly) {
  SimulatedClock clock;
  SessionStore store({.idle_timeout = absl::Minutes(30), .max_lifetime = absl::Hours(12)}, &clock);
  const Session s = store.Create("alice", "viewer", "hash-a");
  auto found = store.Use(s.id);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->user, "alice");
  EXPECT_EQ(found->token_hash, "hash-a");
  EXPECT_FALSE(store.Use("nope").has_value());
  EXPECT_FALSE(store.Use(std::string(64, '0')).has_value());
  EXPECT_TRUE(store.Remove(s.id));
  EXPECT_FALSE(store.Use(s.id).has_value());
  EXPECT_FALSE(store.Remove(s.id));
}

TEST(Sessions, IdleSessionsExpire) {
  SimulatedClock clock;
  SessionStore store({.idle_timeout = absl::Minutes(30), .max_lifetime = absl::Hours(12)}, &clock);
  const Session s = store.Create("alice", "viewer", "h");
  clock.Advance(absl::Minutes(29));
  ASSERT_TRUE(store.Use(s.id).has_value());  // used: the idle time starts again
  clock.Advance(absl::Minutes(29));
  ASSERT_TRUE(store.Use(s.id).has_value());
  clock.Advance(absl::Minutes(30));
  EXPECT_FALSE(store.Use(s.id).has_value());
  EXPECT_EQ(store.size(), 0u);
}

TEST(Sessions, SessionsEndAtTheirLifetimeHoweverBusy) {
  SimulatedClock clock;
  SessionStore store({.idle_timeout = absl::Minutes(30), .max_lifetime = absl::Hours(2)}, &clock);
  const Session s = store.Create("alice", "viewer", "h");
  for (int i = 0; i < 11; ++i) {
    clock.Advance(absl::Minutes(10));
    ASSERT_TRUE(store.Use(s.id).has_value()) << i;
  }
  clock.Advance(absl::Minutes(10));  // two hours since sign-in
  EXPECT_FALSE(store.Use(s.id).has_value());
}

TEST(Sessions, TheCapDropsTheSessionUnusedLongest) {
  SimulatedClock clock;
  SessionStore store({.max_sessions = 3}, &clock);
  const Session a = store.Create("a", "viewer", "h");
  clock.Advance(absl::Seconds(1));
  const Session b = store.Create("b", "viewer", "h");
  clock.Advance(absl::Seconds(1));
  const Session c = store.Create("c", "viewer", "h");
  clock.Advance(absl::Seconds(1));
  ASSERT_TRUE(store.Use(a.id).has_value());  // a is now the most recently used
  const Session d = store.Create("d", "viewer", "h");
  EXPECT_EQ(store.size(), 3u);
  EXPECT_EQ(store.evicted(), 1u);
  EXPECT_TRUE(store.Use(a.id).has_value());
  EXPECT_FALSE(store.Use(b.id).has_value());
  EXPECT_TRUE(store.Use(c.id).has_value());
  EXPECT_TRUE(store.Use(d.id).has_value());
}

TEST(Sessions, ExpiredSessionsMakeRoomBeforeLiveOnesAreEvicted) {
  SimulatedClock clock;
  SessionStore store({.max_sessions = 2, .idle_timeout = absl::Minutes(1)}, &clock);
  store.Create("a", "viewer", "h");
  clock.Advance(absl::Minutes(2));
  const Session b = store.Create("b", "viewer", "h");
  const Session c = store.Create("c", "viewer", "h");
  EXPECT_EQ(store.evicted(), 0u);
  EXPECT_TRUE(store.Use(b.id).has_value());
  EXPECT_TRUE(store.Use(c.id).has_value());
}

TEST(SignInLimiter, RefusesAPeerAfterTooManyFailuresUntilTheWindowEnds) {
  SimulatedClock clock;
  SignInLimiter limiter({.max_failures = 3, .window = absl::Minutes(1)}, &clock);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(limiter.RetryAfter("10.0.0.1"), absl::ZeroDuration()) << i;
    limiter.RecordFailure("10.0.0.1");
  }
  EXPECT_EQ(limiter.RetryAfter("10.0.0.1"), absl::Minutes(1));
  EXPECT_EQ(limiter.RetryAfter("10.0.0.2"), absl::ZeroDuration());  // per peer
  clock.Advance(absl::Seconds(45));
  EXPECT_EQ(limiter.RetryAfter("10.0.0.1"), absl::Seconds(15));
  clock.Advance(absl::Seconds(15));
  EXPECT_EQ(limiter.RetryAfter("10.0.0.1"), absl::ZeroDuration());
  limiter.RecordFailure("10.0.0.1");  // a new window
  EXPECT_EQ(limiter.RetryAfter("10.0.0.1"), absl::ZeroDuration());
}

TEST(SignInLimiter, TracksABoundedNumberOfPeers) {
  SimulatedClock clock;
  SignInLimiter limiter({.max_failures = 1, .window = absl::Minutes(1), .max_peers = 2}, &clock);
  limiter.RecordFailure("a");
  clock.Advance(absl::Seconds(1));
  limiter.RecordFailure("b");
  clock.Advance(absl::Seconds(1));
  limiter.RecordFailure("c");  // forgets a, whose window started first
  EXPECT_EQ(limiter.RetryAfter("a"), absl::ZeroDuration());
  EXPECT_GT(limiter.RetryAfter("b"), absl::ZeroDuration());
  EXPECT_GT(limiter.RetryAfter("c"), absl::ZeroDuration());
}

}  // namespace
}  // namespace vigil::controller::review
