// Telemetry under kills: agents stream every 200 ms while the controller is SIGKILLed and
// restarted, SIGSTOPped and continued, and agents are SIGKILLed and restarted (some while the
// controller is down, so that what they spooled has nowhere to go), at points drawn from the
// seed. After a calm period nothing the controller acknowledged is lost, and every batch an
// agent collected is held by the controller or recorded as a gap (lost_batches).
#include <gtest/gtest.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "tests/chaos/chaos_fixture.h"
#include "tests/chaos/telemetry_check.h"

namespace vigil::chaos {
namespace {

TEST_F(ChaosTest, TelemetryUnderKillsLosesNothingAcknowledged) {
  const std::string token = AddUser("chaos", "viewer");
  ChaosController controller(LoopbackController());
  ASSERT_TRUE(controller.Start(token)) << controller.Output();

  const int count = rng_.Int(2, 3);
  std::vector<AgentSlot> agents(count);
  for (int i = 0; i < count; ++i) {
    agents[i].id = AgentId(absl::StrCat("tele-", i + 1));
    agent_ids_.push_back(agents[i].id);
    agents[i].argv = {testing::BinaryPath("vigil-agent"),
                      "--controller=" + controller.options().listen,
                      "--config=" + WriteAgentConfig(agents[i].id), "--insecure",
                      "--interval=200ms"};
    StartAgentSlot(agents[i]);
  }
  TelemetryWatch watch(controller, token, agents);
  ASSERT_TRUE(watch.WaitStreaming(absl::Seconds(20), 3)) << watch.LastError();
  // How fast the agents' sequences grow here, under this machine's load: the floor for what a
  // killed incarnation must have collected.
  ASSERT_TRUE(watch.Calibrate(absl::Seconds(2))) << watch.LastError();

  const std::vector<Fault> faults = DrawFaults(rng_, 3, 6, count, absl::Seconds(4), true);
  int kills = 0;
  for (const Fault& f : faults) {
    printf("chaos fault: %s\n", f.Describe().c_str());
    absl::SleepFor(f.at);
    watch.Observe();
    switch (f.kind) {
      case Fault::kKillController:
        controller.Kill();
        ++kills;
        absl::SleepFor(f.down);
        ASSERT_TRUE(controller.Start(token)) << controller.Output();
        break;
      case Fault::kFreezeController:
        controller.Freeze();
        absl::SleepFor(f.down);
        controller.Thaw();
        break;
      case Fault::kKillAgent:
        KillAgentSlot(agents[f.agent]);
        ++kills;
        absl::SleepFor(f.down);
        StartAgentSlot(agents[f.agent]);
        break;
      case Fault::kKillAgentDuringOutage:
        controller.Kill();
        absl::SleepFor(f.down * 3 / 4);
        KillAgentSlot(agents[f.agent]);
        kills += 2;
        absl::SleepFor(absl::Milliseconds(200));
        StartAgentSlot(agents[f.agent]);
        absl::SleepFor(f.down / 4);
        ASSERT_TRUE(controller.Start(token)) << controller.Output();
        break;
    }
    watch.Observe();
  }

  // Calm: every agent streams again; then each stops with SIGTERM and says what it collected.
  EXPECT_TRUE(watch.WaitStreaming(absl::Seconds(30), 5)) << watch.LastError();
  const TelemetryVerdict verdict = watch.StopAndCheck(agents);
  Report("kills", kills);
  verdict.ReportTo("telemetry");
  for (const std::string& v : verdict.violations) {
    ADD_FAILURE() << v;
  }
  EXPECT_TRUE(controller.Running());
}

}  // namespace
}  // namespace vigil::chaos
