// What a simulated agent counts and does, whichever client it speaks through: a stream's end
// (drops once per agent and phase, the retry hint only when it parses), a Welcome's pace, an Ack,
// and the census of agents not streaming.
#include "bench/loadgen/agent_policy.h"

#include <gtest/gtest.h>

#include <atomic>
#include <deque>
#include <string>
#include <vector>

namespace vigil::loadgen {
namespace {

constexpr int kCancelled = 1;
constexpr int kResourceExhausted = 8;
constexpr int kUnavailable = 14;

TEST(CountStreamEnd, ADropIsCountedOncePerAgentAndPhase) {
  std::atomic<uint32_t> phase{0};
  FleetOptions options;
  options.phase = &phase;
  FleetCounters c;
  uint32_t dropped_in_phase = 0;
  const StreamEnd cut{.code = kCancelled, .was_streaming = true, .silent_ourselves = true};
  EXPECT_FALSE(CountStreamEnd(cut, options, "a", &dropped_in_phase, c).has_value());
  EXPECT_FALSE(CountStreamEnd(cut, options, "a", &dropped_in_phase, c).has_value());
  EXPECT_EQ(c.drops.load(), 2u);
  EXPECT_EQ(c.drops_cancelled.load(), 2u);
  EXPECT_EQ(c.drops_cancelled_own_gap.load(), 2u);
  EXPECT_EQ(c.drop_agents.load(), 1u) << "one agent, one phase";
  phase = 1;
  CountStreamEnd({.code = kUnavailable, .was_streaming = true}, options, "a", &dropped_in_phase, c);
  EXPECT_EQ(c.drops_unavailable.load(), 1u);
  EXPECT_EQ(c.drop_agents.load(), 2u) << "a new phase counts the agent again";
}

TEST(CountStreamEnd, TheRetryHintOnlyWhenItParses) {
  FleetOptions options;
  FleetCounters c;
  uint32_t dropped_in_phase = 0;
  const std::string good = "750";
  const std::string bad = "soon";
  std::optional<absl::Duration> hint = CountStreamEnd(
      {.code = kResourceExhausted, .retry_after = &good}, options, "a", &dropped_in_phase, c);
  ASSERT_TRUE(hint.has_value());
  EXPECT_EQ(*hint, absl::Milliseconds(750));
  EXPECT_FALSE(CountStreamEnd({.code = kResourceExhausted, .retry_after = &bad}, options, "a",
                              &dropped_in_phase, c)
                   .has_value());
  EXPECT_FALSE(
      CountStreamEnd({.code = kResourceExhausted}, options, "a", &dropped_in_phase, c).has_value());
  EXPECT_EQ(c.refused_exhausted.load(), 3u);
  EXPECT_EQ(c.retry_hints.load(), 1u);
  EXPECT_EQ(c.retry_hint_ms_total.load(), 750u);
  // Not a refusal: our own give-up, and failures before a Welcome are no drops.
  CountStreamEnd({.code = kCancelled, .cancelled_for_welcome = true}, options, "a",
                 &dropped_in_phase, c);
  CountStreamEnd({.code = kUnavailable}, options, "a", &dropped_in_phase, c);
  EXPECT_EQ(c.welcome_timeouts.load(), 1u);
  EXPECT_EQ(c.failed_unavailable.load(), 1u);
  EXPECT_EQ(c.drops.load(), 0u);
}

TEST(Welcomed, SetsThePaceFromTheWelcomeAndNeverRewindsTheSequence) {
  FleetOptions options;
  options.interval = absl::Seconds(1);
  options.heartbeat = absl::Seconds(2);
  v1::Welcome welcome;
  welcome.set_last_sequence(41);
  welcome.set_heartbeat_timeout_ms(2500);
  uint64_t next_sequence = 7;
  const absl::Time now = absl::FromUnixMillis(1'000'400);
  StreamPace pace = Welcomed(options, welcome, now, absl::Seconds(9), &next_sequence);
  EXPECT_EQ(next_sequence, 42u);
  EXPECT_EQ(pace.next_round, absl::FromUnixMillis(1'001'000));
  EXPECT_EQ(pace.silence_timeout, absl::Milliseconds(2500));
  EXPECT_EQ(pace.heartbeat, absl::Milliseconds(1125));  // 45 % of the timeout, under 2 s
  welcome.set_last_sequence(3);
  welcome.set_heartbeat_timeout_ms(0);  // states none: the configured period, the old timeout
  pace = Welcomed(options, welcome, now, absl::Seconds(9), &next_sequence);
  EXPECT_EQ(next_sequence, 42u);
  EXPECT_EQ(pace.heartbeat, absl::Seconds(2));
  EXPECT_EQ(pace.silence_timeout, absl::Seconds(9));
}

TEST(Acknowledged, SettlesEverythingUpToTheAcknowledgedSequence) {
  FleetCounters c;
  std::deque<uint64_t> in_flight = {3, 4, 5, 6};
  Acknowledged(5, 50, &in_flight, c);
  EXPECT_EQ(in_flight, std::deque<uint64_t>({6}));
  EXPECT_EQ(c.batches_acked.load(), 3u);
  EXPECT_EQ(c.samples_acked.load(), 150u);
}

TEST(DescribeNotStreaming, SaysWhatTheAgentsNotStreamingDo) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  EXPECT_EQ(DescribeNotStreaming({{.state = AgentState::kStreaming, .attempted = true}}, now),
            "every agent streaming");
  const std::vector<AgentCensus> agents = {
      {.state = AgentState::kWaiting,
       .since = now - absl::Seconds(3),
       .next = now + absl::Seconds(2),
       .attempted = true},
      {.state = AgentState::kWaiting, .since = now - absl::Seconds(1), .attempted = false},
      {.state = AgentState::kWatching, .since = now - absl::Milliseconds(500), .attempted = true},
      {.state = AgentState::kStreaming, .since = now, .attempted = true},
  };
  EXPECT_EQ(DescribeNotStreaming(agents, now),
            "1 waiting to retry (longest 3s), 1 not tried yet (longest 1s), 1 waiting for its "
            "connection (longest 500ms); furthest retry due in 2s");
}

}  // namespace
}  // namespace vigil::loadgen
