// Alert state across controller restarts, with the real controller, agent and CLI on loopback:
// a `for: 20s` rule on a condition that always holds fires on schedule although the controller
// is restarted every ~8 s, and however many restarts there are, the alert stays one alert (the
// same id, firing again after each restart, no stale copies on the incident).
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tests/support/process.h"
#include "tests/support/proto_json.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::ParseJson;
using testing::RunCommand;
using testing::Subprocess;
using testing::WaitUntil;

// Memory in use is never negative: the condition holds for as long as the agent reports.
constexpr char kRules[] = R"(rules:
  - alert: MemoryInUse
    expr: host_memory_used_ratio >= 0
    for: 20s
    severity: SEV3
    summary: "memory is in use"
)";

class AlertRestartsTest : public ::testing::Test {
 protected:
  AlertRestartsTest()
      : grpc_port_(testing::FreeLoopbackPort()), address_(absl::StrCat("127.0.0.1:", grpc_port_)) {
    testing::WriteFile(dir_.File("rules.yaml"), kRules);
    // Its own spool: rounds left by another run with the same id must not replay into this one.
    testing::WriteFile(dir_.File("agent.yaml"),
                       absl::StrCat("id: web-1\nlabels: {role: api}\ncollectors:\n  host: {}\n",
                                    "spool_dir: ", dir_.File("web-1.spool"), "\n"));
  }
  ~AlertRestartsTest() override {
    if (agent_ != nullptr) {
      agent_->Kill();
    }
    if (controller_ != nullptr) {
      controller_->Kill();
    }
  }

  void StartController() {
    if (token_.empty()) {
      token_ = testing::AddVigilUser(db(), "tester", "admin");
    }
    controller_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-controller"), "--listen=" + address_,
                                 "--db=" + db(), "--insecure", "--http-listen=off",
                                 "--rules=" + dir_.File("rules.yaml")},
        std::map<std::string, std::string>{},
        dir_.File(absl::StrCat("controller-", ++controllers_, ".log")));
    ASSERT_TRUE(WaitUntil([&] { return Cli({"agents"}).exit_code == 0; }, absl::Seconds(10)))
        << controller_->Output();
  }

  // Every other restart is a crash.
  void StopController() {
    if (controllers_ % 2 == 0) {
      controller_->Kill();
    } else {
      EXPECT_EQ(controller_->Stop(absl::Seconds(10)), 0) << controller_->Output();
    }
  }

  void StartAgent() {
    agent_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-agent"), "--controller=" + address_,
                                 "--config=" + dir_.File("agent.yaml"), "--insecure",
                                 "--interval=1s"},
        std::map<std::string, std::string>{}, dir_.File("agent.log"));
  }

  CommandResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {BinaryPath("vigil"), "--controller=" + address_, "--insecure",
                               "--token=" + token_});
    return RunCommand(args);
  }

  // `vigil alerts` for the rule.
  std::vector<v1::Alert> Alerts() {
    v1::ListAlertsResponse r;
    CommandResult c = Cli({"alerts", "-o", "json"});
    if (c.exit_code != 0 || !ParseJson(c.stdout_text, &r)) {
      return {};
    }
    std::vector<v1::Alert> out;
    for (const v1::Alert& a : r.alerts()) {
      if (a.rule() == "MemoryInUse") {
        out.push_back(a);
      }
    }
    return out;
  }

  bool AgentStreaming() {
    v1::ListAgentsResponse r;
    CommandResult c = Cli({"agents", "-o", "json"});
    if (c.exit_code != 0 || !ParseJson(c.stdout_text, &r)) {
      return false;
    }
    for (const v1::AgentInfo& a : r.agents()) {
      if (a.agent_id() == "web-1" && a.state() == v1::CONNECTED) {
        return true;
      }
    }
    return false;
  }

  // Rows of the stored alerts of the rule in `state` (read beside the controller, like an
  // operator's sqlite3).
  int StoredAlerts(v1::AlertState state) {
    CommandResult c = RunCommand(
        {"sqlite3", db(), absl::StrCat("SELECT count(*) FROM alerts WHERE state = ", state)});
    int n = -1;
    EXPECT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(c.stdout_text), &n)) << c.output;
    return n;
  }

  // After the restarts: one alert for the rule, firing, and its incident holds it alone.
  void ExpectOneFiringAlert(const std::string& id) {
    std::vector<v1::Alert> alerts = Alerts();
    ASSERT_EQ(alerts.size(), 1u) << Cli({"alerts"}).stdout_text;
    EXPECT_EQ(alerts[0].id(), id);
    EXPECT_EQ(alerts[0].state(), v1::FIRING);
    v1::ListIncidentsResponse incidents;
    CommandResult c = Cli({"incidents", "--state=all", "-o", "json"});
    ASSERT_TRUE(ParseJson(c.stdout_text, &incidents)) << c.output;
    ASSERT_EQ(incidents.incidents_size(), 1) << c.stdout_text;
    v1::GetIncidentResponse shown;
    c = Cli({"incident", "show", incidents.incidents(0).id(), "-o", "json"});
    ASSERT_TRUE(ParseJson(c.stdout_text, &shown)) << c.output;
    int firing = 0, stale = 0, other = 0;
    for (const v1::Alert& a : shown.alerts()) {
      if (a.rule() != "MemoryInUse") {
        continue;
      }
      if (a.state() == v1::FIRING && a.id() == id) {
        ++firing;
      } else if (a.state() == v1::STALE) {
        ++stale;
      } else {
        ++other;
      }
    }
    EXPECT_EQ(firing, 1) << c.stdout_text;
    EXPECT_EQ(stale, 0) << c.stdout_text;
    EXPECT_EQ(other, 0) << c.stdout_text;
    int firing_again = 0;
    for (const v1::TimelineEvent& e : shown.timeline()) {
      firing_again += absl::StrContains(e.summary(), "firing again (it was stale)") ? 1 : 0;
    }
    EXPECT_GE(firing_again, 1) << c.stdout_text;
  }

  std::string db() const { return dir_.File("vigil.db"); }

  testing::TempDir dir_;
  const uint16_t grpc_port_;
  const std::string address_;
  std::unique_ptr<Subprocess> controller_;
  std::unique_ptr<Subprocess> agent_;
  std::string token_;
  int controllers_ = 0;
};

TEST_F(AlertRestartsTest, FiringAlertStaysOneAlertAcrossRestarts) {
  StartController();
  StartAgent();
  std::vector<v1::Alert> alerts;
  ASSERT_TRUE(WaitUntil(
      [&] {
        alerts = Alerts();
        return alerts.size() == 1 && alerts[0].state() == v1::FIRING;
      },
      absl::Seconds(45)))
      << controller_->Output() << agent_->Output();
  const v1::Alert first = alerts[0];
  // On schedule in telemetry time: the sample 20 s after the first one that met it.
  EXPECT_GE(first.fired_unix_ms() - first.active_since_unix_ms(), 20'000);
  EXPECT_LE(first.fired_unix_ms() - first.active_since_unix_ms(), 21'500);

  constexpr int kRestarts = 4;
  for (int i = 0; i < kRestarts; ++i) {
    SCOPED_TRACE(absl::StrCat("restart ", i + 1));
    StopController();
    StartController();
    // Before data returns the alert is stale (the incident manager's view of a restart) ...
    // ... and once it does, the same alert fires again.
    ASSERT_TRUE(WaitUntil(
        [&] {
          alerts = Alerts();
          return alerts.size() == 1 && alerts[0].state() == v1::FIRING;
        },
        absl::Seconds(40)))
        << controller_->Output() << agent_->Output();
    EXPECT_EQ(alerts[0].id(), first.id());
    EXPECT_EQ(alerts[0].fired_unix_ms(), first.fired_unix_ms());
  }
  ExpectOneFiringAlert(first.id());
  StopController();
  // And in the store: one row for the alert, firing or stale (the latter if the last stop
  // came before the alert was judged again), never one per restart.
  EXPECT_EQ(StoredAlerts(v1::FIRING) + StoredAlerts(v1::STALE), 1);
}

TEST_F(AlertRestartsTest, PendingTimerFiresOnScheduleAcrossRestartsEvery8s) {
  StartController();
  StartAgent();
  ASSERT_TRUE(WaitUntil([&] { return AgentStreaming(); }, absl::Seconds(30))) << agent_->Output();
  std::vector<v1::Alert> alerts;
  ASSERT_TRUE(WaitUntil(
      [&] {
        alerts = Alerts();
        return alerts.size() == 1;
      },
      absl::Seconds(10)))
      << controller_->Output();
  ASSERT_EQ(alerts[0].state(), v1::PENDING);
  const std::string id = alerts[0].id();
  const int64_t active_since = alerts[0].active_since_unix_ms();

  // The controller runs ~8 s at a time (from when the agent streams again), down in between,
  // until the alert fires.
  absl::Time started = absl::Now();
  int restarts = 0;
  bool fired = false;
  while (!fired && restarts < 8) {
    if (!WaitUntil(
            [&] {
              alerts = Alerts();
              fired = alerts.size() == 1 && alerts[0].state() == v1::FIRING;
              return fired;
            },
            std::max(absl::Seconds(8) - (absl::Now() - started), absl::ZeroDuration()),
            absl::Milliseconds(200))) {
      StopController();
      if (restarts == 0 && StoredAlerts(v1::PENDING) == 0) {
        FAIL() << "no pending alert is stored: a restarted controller has no `for` timer to "
                  "take back";
      }
      ++restarts;
      StartController();
      ASSERT_TRUE(WaitUntil([&] { return AgentStreaming(); }, absl::Seconds(30)))
          << agent_->Output();
      started = absl::Now();
    }
  }
  ASSERT_TRUE(fired) << "not fired after " << restarts << " restarts\n" << controller_->Output();
  EXPECT_GE(restarts, 1);
  EXPECT_EQ(alerts[0].id(), id);
  EXPECT_EQ(alerts[0].active_since_unix_ms(), active_since);
  // 20 s after the first sample that met it, in the samples' time, however many restarts.
  EXPECT_GE(alerts[0].fired_unix_ms() - active_since, 20'000);
  EXPECT_LE(alerts[0].fired_unix_ms() - active_since, 21'500);

  // More restarts: still one alert, firing, with no stale copies.
  for (int i = 0; i < 3; ++i) {
    StopController();
    StartController();
    ASSERT_TRUE(WaitUntil(
        [&] {
          alerts = Alerts();
          return alerts.size() == 1 && alerts[0].state() == v1::FIRING;
        },
        absl::Seconds(40)))
        << controller_->Output();
    EXPECT_EQ(alerts[0].id(), id);
  }
  ExpectOneFiringAlert(id);
}

}  // namespace
}  // namespace vigil
