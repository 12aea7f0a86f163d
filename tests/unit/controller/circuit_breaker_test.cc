// Circuit breakers: the run ledger's sliding windows, cool-downs, planned runs and re-arms, and
// the policy's `breaker:` keys.
#include "controller/remediation/circuit_breaker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "controller/remediation/policy.h"

namespace vigil::controller {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

BreakerLimits Limits(int per_host, int per_fleet, absl::Duration window,
                     absl::Duration cooldown = absl::ZeroDuration()) {
  BreakerLimits limits;
  limits.per_host = per_host;
  limits.per_fleet = per_fleet;
  limits.window = window;
  limits.cooldown = cooldown;
  return limits;
}

TEST(RunLedger, PerHostBoundSaysCountBoundAndWhenItOpens) {
  RunLedger ledger;
  const BreakerLimits limits = Limits(3, 0, absl::Hours(1));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(ledger.Check("restart_service", {"web-1"}, {}, limits, kT0 + absl::Minutes(i)).ok());
    ledger.AddRun("restart_service", "web-1", kT0 + absl::Minutes(i));
  }
  const absl::Status refused =
      ledger.Check("restart_service", {"web-1"}, {}, limits, kT0 + absl::Minutes(10));
  ASSERT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  const std::string message(refused.message());
  EXPECT_THAT(message, HasSubstr("restart_service ran 3 time(s) on web-1 in the last 1h"));
  EXPECT_THAT(message, HasSubstr("at most 3 per host"));
  // The oldest run (kT0) leaves the window at kT0 + 1h.
  EXPECT_THAT(message, HasSubstr(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", kT0 + absl::Hours(1),
                                                  absl::UTCTimeZone())));
  EXPECT_THAT(message, HasSubstr("(in 50m)"));
  EXPECT_THAT(message, HasSubstr("vigil action rearm INCIDENT --action restart_service"));
  // Another host and another action are not affected.
  EXPECT_TRUE(ledger.Check("restart_service", {"web-2"}, {}, limits, kT0 + absl::Minutes(10)).ok());
  EXPECT_TRUE(ledger.Check("logrotate", {"web-1"}, {}, limits, kT0 + absl::Minutes(10)).ok());
  // The window slides: one slot frees at kT0 + 1h, not a second earlier.
  EXPECT_FALSE(ledger.Check("restart_service", {"web-1"}, {}, limits,
                            kT0 + absl::Hours(1) - absl::Seconds(1))
                   .ok());
  EXPECT_TRUE(
      ledger.Check("restart_service", {"web-1"}, {}, limits, kT0 + absl::Hours(1) + absl::Seconds(1))
          .ok());
}

TEST(RunLedger, CooldownKeepsItShutAfterTheLastRun) {
  RunLedger ledger;
  const BreakerLimits limits = Limits(2, 0, absl::Minutes(10), absl::Minutes(8));
  ledger.AddRun("drop_caches", "h", kT0);
  ledger.AddRun("drop_caches", "h", kT0 + absl::Minutes(5));
  const absl::Status refused = ledger.Check("drop_caches", {"h"}, {}, limits, kT0 + absl::Minutes(6));
  ASSERT_FALSE(refused.ok());
  // The window alone would open at kT0 + 10m; the cool-down after the run at 5m holds to 13m.
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", kT0 + absl::Minutes(13),
                                         absl::UTCTimeZone())));
  EXPECT_THAT(std::string(refused.message()), HasSubstr("then a cool-down of 8m"));
  const absl::Status cooling =
      ledger.Check("drop_caches", {"h"}, {}, limits, kT0 + absl::Minutes(12));
  EXPECT_FALSE(cooling.ok()) << "the window has a free slot at 12m but the cool-down holds";
  EXPECT_THAT(std::string(cooling.message()), HasSubstr("ran 1 time(s) on h"));
  EXPECT_TRUE(ledger.Check("drop_caches", {"h"}, {}, limits, kT0 + absl::Minutes(13)).ok());
  // A last run that did not reach the bound starts no cool-down.
  RunLedger once;
  once.AddRun("drop_caches", "h", kT0);
  EXPECT_TRUE(once.Check("drop_caches", {"h"}, {}, limits, kT0 + absl::Minutes(1)).ok());
}

TEST(RunLedger, PlannedRunsCountAndFleetBoundCountsEveryAgent) {
  RunLedger ledger;
  const BreakerLimits limits = Limits(0, 5, absl::Hours(1));
  ledger.AddRun("reload_nginx", "a", kT0);
  ledger.AddRun("reload_nginx", "b", kT0);
  // 2 stored + 2 approved but not yet signed + 2 asked = 6 > 5.
  const absl::Status refused = ledger.Check("reload_nginx", {"c", "d"}, {{"e", 1}, {"f", 1}},
                                            limits, kT0 + absl::Minutes(1));
  ASSERT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr("ran 2 time(s) across the fleet with 2 more approved in the last 1h "
                        "(at most 5 per fleet); 2 more may run at"));
  EXPECT_TRUE(ledger.Check("reload_nginx", {"c"}, {{"e", 1}, {"f", 1}}, limits,
                           kT0 + absl::Minutes(1))
                  .ok());
  // Asking for more agents than the bound can ever hold says so.
  const absl::Status never = ledger.Check("reload_nginx", {"1", "2", "3", "4", "5", "6"}, {},
                                          limits, kT0 + absl::Hours(2));
  EXPECT_THAT(std::string(never.message()), HasSubstr("no time within one window"));
  // Per host, planned runs count as runs now.
  const absl::Status host = ledger.Check("reload_nginx", {"a"}, {{"a", 1}},
                                         Limits(2, 0, absl::Hours(1)), kT0 + absl::Minutes(1));
  EXPECT_THAT(std::string(host.message()), HasSubstr("ran 1 time(s) on a with 1 more approved"));
}

TEST(RunLedger, RearmForgetsEarlierRunsOnlyWhereItSays) {
  RunLedger ledger;
  const BreakerLimits limits = Limits(1, 2, absl::Hours(1));
  ledger.AddRun("restart_service", "a", kT0);
  ledger.AddRun("restart_service", "b", kT0);
  const absl::Time t = kT0 + absl::Minutes(5);
  EXPECT_FALSE(ledger.Check("restart_service", {"a"}, {}, limits, t).ok());
  ledger.Rearm("restart_service", {"a"}, t);
  // Host a is re-armed, but the fleet count (2 of 2) still holds.
  const absl::Status fleet = ledger.Check("restart_service", {"a"}, {}, limits, t);
  EXPECT_THAT(std::string(fleet.message()), HasSubstr("across the fleet"));
  EXPECT_FALSE(ledger.Check("restart_service", {"b"}, {}, Limits(1, 0, absl::Hours(1)), t).ok());
  EXPECT_TRUE(ledger.Check("restart_service", {"a"}, {}, Limits(1, 0, absl::Hours(1)), t).ok());
  // A fleet-wide re-arm clears the fleet count and every host's.
  ledger.Rearm("restart_service", {}, t);
  EXPECT_TRUE(ledger.Check("restart_service", {"a", "b"}, {}, limits, t).ok());
  // Runs after the re-arm count again.
  ledger.AddRun("restart_service", "b", t + absl::Seconds(1));
  EXPECT_FALSE(ledger.Check("restart_service", {"b"}, {}, limits, t + absl::Seconds(2)).ok());
}

TEST(RunLedger, RemoveRunTakesBackOneRunAndPruneForgetsPastTheHorizon) {
  RunLedger ledger;
  ledger.AddRun("x", "a", kT0);
  ledger.AddRun("x", "a", kT0);
  ledger.RemoveRun("x", "a", kT0);
  EXPECT_EQ(ledger.runs(), 1u);
  ledger.RemoveRun("y", "a", kT0);   // an action with no runs: nothing changes
  ledger.RemoveRun("x", "zz", kT0);  // another agent's run: nothing changes
  EXPECT_EQ(ledger.runs(), 1u);
  ledger.AddRun("x", "b", kT0 + RunLedger::kHorizon);
  ledger.Prune(kT0 + RunLedger::kHorizon + absl::Seconds(1));
  EXPECT_EQ(ledger.runs(), 1u) << "only the run inside the horizon stays";
}

TEST(BreakerPolicy, BuiltInDefaultsFileOverridesAndErrors) {
  auto defaults = ParsePolicy("wave_size: 100\n", "p.yaml");
  ASSERT_TRUE(defaults.ok());
  const BreakerLimits restart = defaults->For("restart_service").breaker;
  EXPECT_EQ(restart.per_host, 3);
  EXPECT_EQ(restart.window, absl::Hours(1));
  EXPECT_EQ(defaults->For("redis_flushdb").breaker.window, absl::Hours(24));

  auto file = ParsePolicy(R"(default: {breaker: {per_host: 7}}
actions:
  restart_service: {breaker: {per_host: 5, cooldown: 2m}}
)",
                          "p.yaml");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->For("restart_service").breaker.per_host, 5);
  EXPECT_EQ(file->For("restart_service").breaker.per_fleet, 50) << "the built-in key it kept";
  EXPECT_EQ(file->For("restart_service").breaker.cooldown, absl::Minutes(2));
  EXPECT_EQ(file->For("logrotate").breaker.per_host, 4) << "a built-in breaker wins over default";

  for (const auto& [text, want] : std::vector<std::pair<std::string, std::string>>{
           {"actions:\n  logrotate: {breaker: 3}\n", "p.yaml:2: actions.logrotate.breaker must be a map"},
           {"actions:\n  logrotate: {breaker: {per_host: -1}}\n", "per_host"},
           {"actions:\n  logrotate: {breaker: {per_hosts: 1}}\n", "unknown key 'per_hosts'"},
           {"actions:\n  logrotate: {breaker: {window: 30s}}\n", "window must be 1m to 7d"},
           {"actions:\n  logrotate: {breaker: {window: 10m, cooldown: 1h}}\n",
            "cooldown must be 0 to the window (10m)"},
       }) {
    auto bad = ParsePolicy(text, "p.yaml");
    ASSERT_FALSE(bad.ok()) << text;
    EXPECT_THAT(std::string(bad.status().message()), HasSubstr(want)) << text;
  }
}

}  // namespace
}  // namespace vigil::controller
