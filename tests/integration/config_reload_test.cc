// vigil-controller and SIGHUP with the real binaries: a rewritten rule file takes effect (an agent
// makes the new rule fire), a broken one is refused with file:line in the log while the old
// rules go on, and a controller without --rules or --policy lives through it.
#include <gtest/gtest.h>
#include <signal.h>

#include <memory>
#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::Subprocess;
using testing::WaitUntil;

// The controller binds port 0 for both ports and says which it got in its start line.
class ConfigReloadTest : public ::testing::Test {
 protected:
  void StartController(std::vector<std::string> extra) {
    std::vector<std::string> argv = {BinaryPath("vigil-controller"), "--listen=127.0.0.1:0",
                                     "--http-listen=127.0.0.1:0",
                                     "--db=" + dir_.File("data/vigil.db"), "--insecure"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    controller_ = std::make_unique<Subprocess>(argv, std::map<std::string, std::string>{},
                                               dir_.File("controller.log"));
    const std::regex started(R"(listening on \S+ \(port (\d+)\), HTTP port (\d+))");
    std::smatch m;
    ASSERT_TRUE(WaitUntil(
        [&] {
          const std::string log = controller_->Output();
          if (!std::regex_search(log, m, started)) {
            return false;
          }
          return absl::SimpleAtoi(m[1].str(), &port_) && absl::SimpleAtoi(m[2].str(), &http_);
        },
        absl::Seconds(15)))
        << controller_->Output();
  }

  std::string Metrics() {
    std::string body;
    testing::HttpGet(static_cast<uint16_t>(http_), "/metrics", absl::Seconds(5), &body);
    return body;
  }
  bool MetricsSay(const std::string& line) { return absl::StrContains(Metrics(), line + "\n"); }

  testing::TempDir dir_;
  std::unique_ptr<Subprocess> controller_;
  int port_ = 0;
  int http_ = 0;
};

TEST_F(ConfigReloadTest, SighupTakesANewRuleFileAndRefusesABrokenOne) {
  testing::WriteFile(dir_.File("rules.yaml"), R"(rules:
  - alert: NeverLoad
    expr: host_load1 < -1
)");
  StartController({"--rules=" + dir_.File("rules.yaml")});
  testing::WriteFile(dir_.File("agent.yaml"), "labels: {role: api}\ncollectors:\n  host: {}\n");
  Subprocess agent(
      {BinaryPath("vigil-agent"), absl::StrCat("--controller=127.0.0.1:", port_),
       "--config=" + dir_.File("agent.yaml"), "--id=web-1", "--insecure", "--interval=200ms"},
      std::map<std::string, std::string>{}, dir_.File("agent.log"));
  ASSERT_TRUE(WaitUntil([&] { return MetricsSay("vigil_agents_connected 1"); }, absl::Seconds(15)))
      << agent.Output();
  ASSERT_TRUE(MetricsSay("vigil_alerts{state=\"firing\"} 0"));

  // A rule that always holds: in force after SIGHUP, it fires on the next batch.
  testing::WriteFile(dir_.File("rules.yaml"), R"(rules:
  - alert: NeverLoad
    expr: host_load1 < -1
  - alert: AnyLoad
    expr: host_load1 >= 0
)");
  controller_->Signal(SIGHUP);
  ASSERT_TRUE(
      WaitUntil([&] { return MetricsSay("vigil_alerts{state=\"firing\"} 1"); }, absl::Seconds(15)))
      << controller_->Output();
  EXPECT_TRUE(MetricsSay("vigil_config_reloads_total{result=\"ok\"} 1"));
  EXPECT_TRUE(MetricsSay("vigil_rules_loaded 2"));
  EXPECT_TRUE(absl::StrContains(controller_->Output(), "added: AnyLoad")) << controller_->Output();

  // Broken: refused, said with file and line, and the old rules (and their alert) go on.
  testing::WriteFile(dir_.File("rules.yaml"), R"(rules:
  - alert: AnyLoad
    expr: host_lod1 >= 0
)");
  controller_->Signal(SIGHUP);
  ASSERT_TRUE(
      WaitUntil([&] { return MetricsSay("vigil_config_reloads_total{result=\"failed\"} 1"); },
                absl::Seconds(10)))
      << controller_->Output();
  EXPECT_TRUE(controller_->Running());
  const std::string log = controller_->Output();
  EXPECT_TRUE(absl::StrContains(log, "configuration reload refused")) << log;
  EXPECT_TRUE(absl::StrContains(log, dir_.File("rules.yaml") + ":3: rule AnyLoad: expr: ")) << log;
  EXPECT_TRUE(MetricsSay("vigil_rules_loaded 2"));
  EXPECT_TRUE(MetricsSay("vigil_alerts{state=\"firing\"} 1"));
  EXPECT_TRUE(MetricsSay("vigil_agents_connected 1"));

  // Fixed, with another rule changed: the firing alert is kept, and keeps firing on new data.
  testing::WriteFile(dir_.File("rules.yaml"), R"(rules:
  - alert: NeverLoad
    expr: host_load1 < -2
  - alert: AnyLoad
    expr: host_load1 >= 0
)");
  controller_->Signal(SIGHUP);
  ASSERT_TRUE(WaitUntil([&] { return MetricsSay("vigil_config_reloads_total{result=\"ok\"} 2"); },
                        absl::Seconds(10)))
      << controller_->Output();
  EXPECT_TRUE(absl::StrContains(controller_->Output(), "changed: NeverLoad; 1 alert(s) kept"))
      << controller_->Output();
  EXPECT_TRUE(MetricsSay("vigil_alerts{state=\"firing\"} 1"));

  // The firing rule removed: its alert resolves.
  testing::WriteFile(dir_.File("rules.yaml"),
                     "rules:\n  - alert: NeverLoad\n    expr: host_load1 < -2\n");
  controller_->Signal(SIGHUP);
  ASSERT_TRUE(
      WaitUntil([&] { return MetricsSay("vigil_alerts{state=\"firing\"} 0"); }, absl::Seconds(10)))
      << controller_->Output();
  EXPECT_TRUE(absl::StrContains(controller_->Output(), "removed: AnyLoad"));
  EXPECT_TRUE(MetricsSay("vigil_rules_loaded 1"));
  EXPECT_TRUE(controller_->Running());
  EXPECT_EQ(controller_->Stop(), 0);
}

TEST_F(ConfigReloadTest, SighupWithoutFilesKeepsTheBuiltInsAndTheController) {
  StartController({});
  controller_->Signal(SIGHUP);
  ASSERT_TRUE(WaitUntil([&] { return MetricsSay("vigil_config_reloads_total{result=\"ok\"} 1"); },
                        absl::Seconds(10)))
      << controller_->Output();
  EXPECT_TRUE(controller_->Running());
  EXPECT_TRUE(
      absl::StrContains(controller_->Output(), "the built-in rules and policy stay in force"));
  EXPECT_EQ(controller_->Stop(), 0);
}

}  // namespace
}  // namespace vigil
