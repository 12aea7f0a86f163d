// Fast return: 20 agents stream to a controller that is SIGKILLed and restarted (a random number
// of times, down for a random while). From the moment the restarted controller answers, every
// agent must be streaming again (connected, its sequence moving) within 2 s.
#include <gtest/gtest.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/chaos/chaos_fixture.h"

namespace vigil::chaos {
namespace {

constexpr int kAgents = 20;
constexpr absl::Duration kWithin = absl::Seconds(2);

TEST_F(ChaosTest, AgentsStreamAgainWithinTwoSecondsOfARestart) {
  const std::string token = AddUser("chaos", "viewer");
  ChaosController controller(LoopbackController());
  ASSERT_TRUE(controller.Start(token)) << controller.Output();
  std::vector<AgentSlot> agents(kAgents);
  for (int i = 0; i < kAgents; ++i) {
    agents[i].id = AgentId(absl::StrCat("fleet-", i + 1));
    agent_ids_.push_back(agents[i].id);
    agents[i].argv = {testing::BinaryPath("vigil-agent"),
                      "--controller=" + controller.options().listen,
                      "--config=" + WriteAgentConfig(agents[i].id), "--insecure",
                      "--interval=500ms", "--log-level=warn"};
    StartAgentSlot(agents[i]);
  }
  // All streaming: connected, and each sequence past where it was.
  auto streaming_since = [&](const std::map<std::string, uint64_t>& base, int* missing) {
    auto listed = ListAgents(controller, token);
    if (!listed) {
      *missing = kAgents;
      return false;
    }
    *missing = 0;
    for (const AgentSlot& a : agents) {
      auto it = listed->find(a.id);
      const uint64_t from = base.count(a.id) ? base.at(a.id) : 0;
      *missing += it == listed->end() || it->second.state() != v1::CONNECTED ||
                  it->second.last_sequence() <= from;
    }
    return *missing == 0;
  };
  int missing = 0;
  ASSERT_TRUE(testing::WaitUntil([&] { return streaming_since({}, &missing); },
                                 absl::Seconds(30)))
      << missing << " agents are not streaming";

  const int restarts = rng_.Int(2, 3) * ChaosScale();
  std::vector<absl::Duration> returns;
  for (int r = 0; r < restarts; ++r) {
    absl::SleepFor(rng_.Between(absl::Milliseconds(500), absl::Seconds(2)));
    std::map<std::string, uint64_t> base;
    if (auto listed = ListAgents(controller, token)) {
      for (const auto& [id, info] : *listed) {
        base[id] = info.last_sequence();
      }
    }
    const absl::Duration down = rng_.Between(absl::Milliseconds(500), absl::Seconds(4));
    printf("chaos fault: SIGKILL controller, down %s\n", absl::FormatDuration(down).c_str());
    controller.Kill();
    absl::SleepFor(down);
    // Start() returns as soon as the API answers: the clock starts there.
    ASSERT_TRUE(controller.Start(token)) << controller.Output();
    const absl::Time answering = absl::Now();
    const bool in_time = testing::WaitUntil([&] { return streaming_since(base, &missing); },
                                            kWithin, absl::Milliseconds(50));
    const int missing_in_time = missing;
    const bool back = in_time || testing::WaitUntil(
                                     [&] { return streaming_since(base, &missing); },
                                     absl::Seconds(20) - kWithin, absl::Milliseconds(50));
    const absl::Duration took = absl::Now() - answering;
    printf("chaos: restart %d: fleet of %d back in %s%s\n", r + 1, kAgents,
           absl::FormatDuration(took).c_str(),
           back ? "" : absl::StrCat(" (", missing, " still not streaming after 20 s)").c_str());
    returns.push_back(back ? took : absl::Seconds(20));
    Report("fleet_return_ms", absl::ToDoubleMilliseconds(returns.back()));
    EXPECT_TRUE(in_time) << "restart " << r + 1 << ": " << missing_in_time << " of " << kAgents
                         << " agents were not streaming again " << absl::FormatDuration(kWithin)
                         << " after the controller answered ("
                         << (back ? absl::StrCat("all back after ", absl::FormatDuration(took))
                                  : absl::StrCat(missing, " still not after 20 s"))
                         << ")";
  }
  Report("kills", restarts);
}

}  // namespace
}  // namespace vigil::chaos
