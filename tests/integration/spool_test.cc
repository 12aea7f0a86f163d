// The agent's durable spool and the fleet's return, with the real binaries on loopback: agents
// are streaming again within 2 s of a restarted controller answering; an agent killed -9 while
// the controller is down loses nothing; a spool too small for an outage drops the oldest rounds,
// and the controller records them as lost on the agent and on /metrics.
#include <arpa/inet.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;
using testing::Subprocess;
using testing::WaitUntil;

bool PortAccepts(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

class SpoolTest : public ::testing::Test {
 protected:
  SpoolTest()
      : port_(testing::FreeLoopbackPort()),
        http_port_(testing::FreeLoopbackPort()),
        address_(absl::StrCat("127.0.0.1:", port_)) {}

  void StartController() {
    if (token_.empty()) {
      token_ = testing::AddVigilUser(dir_.File("data/vigil.db"), "tester", "viewer");
    }
    controller_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-controller"), "--listen=" + address_,
                                 "--db=" + dir_.File("data/vigil.db"), "--insecure",
                                 absl::StrCat("--http-listen=127.0.0.1:", http_port_)},
        std::map<std::string, std::string>{},
        dir_.File(absl::StrCat("controller-", ++controllers_, ".log")));
  }

  void WaitForController() {
    ASSERT_TRUE(WaitUntil([&] { return testing::HttpGet(http_port_, "/metrics") == 200; },
                          absl::Seconds(15)))
        << controller_->Output();
  }

  // An agent collecting every 200 ms, its journal and spool under dir/ID/.
  Subprocess& StartAgent(const std::string& id, uint64_t spool_max_bytes = 64 << 20) {
    const std::string config = dir_.File(absl::StrCat(id, ".yaml"));
    testing::WriteFile(config, absl::StrCat("collectors:\n  host: {}\njournal: ",
                                            dir_.File(absl::StrCat(id, "/", id, ".journal")),
                                            "\nspool_max_bytes: ", spool_max_bytes, "\n"));
    agents_.push_back(std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-agent"), "--controller=" + address_,
                                 "--config=" + config, "--id=" + id, "--insecure",
                                 "--interval=200ms"},
        std::map<std::string, std::string>{},
        dir_.File(absl::StrCat("agent-", id, "-", agents_.size(), ".log"))));
    return *agents_.back();
  }

  std::string Metrics() {
    std::string body;
    testing::HttpGet(http_port_, "/metrics", absl::Seconds(5), &body);
    return body;
  }

  // The value of one sample line of /metrics ("name{labels}"), -1 when absent.
  double Metric(const std::string& sample) {
    for (absl::string_view line : absl::StrSplit(Metrics(), '\n')) {
      if (absl::StartsWith(line, sample + " ")) {
        double v = -1;
        return absl::SimpleAtod(line.substr(sample.size() + 1), &v) ? v : -1;
      }
    }
    return -1;
  }

  std::map<std::string, v1::AgentInfo> Agents() {
    std::map<std::string, v1::AgentInfo> out;
    CommandResult r = RunCommand({BinaryPath("vigil"), "--controller=" + address_,
                                  "--token=" + token_, "--insecure", "agents", "-o", "json"},
                                 absl::Seconds(15));
    if (r.exit_code != 0) {
      return out;
    }
    v1::ListAgentsResponse response;
    if (!google::protobuf::util::JsonStringToMessage(r.stdout_text, &response).ok()) {
      return out;
    }
    for (const auto& a : response.agents()) {
      out[a.agent_id()] = a;
    }
    return out;
  }

  testing::TempDir dir_;
  const uint16_t port_;
  const uint16_t http_port_;
  const std::string address_;
  int controllers_ = 0;
  std::unique_ptr<Subprocess> controller_;
  std::string token_;
  std::vector<std::unique_ptr<Subprocess>> agents_;
};

TEST_F(SpoolTest, AgentsStreamAgainWithinTwoSecondsOfARestartedControllerAnswering) {
  StartController();
  WaitForController();
  constexpr int kAgents = 5;
  for (int i = 1; i <= kAgents; ++i) {
    StartAgent(absl::StrCat("back-", i));
  }
  ASSERT_TRUE(WaitUntil([&] { return Metric("vigil_agents_connected") == kAgents; },
                        absl::Seconds(20)))
      << Metrics();
  // Down long enough for every agent's backoff to reach its ceiling.
  controller_->Stop();
  absl::SleepFor(absl::Seconds(6));
  StartController();
  ASSERT_TRUE(WaitUntil([&] { return PortAccepts(port_); }, absl::Seconds(15),
                        absl::Milliseconds(5)))
      << controller_->Output();
  const absl::Time answering = absl::Now();
  ASSERT_TRUE(WaitUntil([&] { return Metric("vigil_agents_connected") == kAgents; },
                        absl::Seconds(10), absl::Milliseconds(20)))
      << Metrics();
  const absl::Duration back = absl::Now() - answering;
  EXPECT_LT(back, absl::Seconds(2)) << "agents took " << absl::FormatDuration(back);
  std::cout << "fleet of " << kAgents << " back " << absl::FormatDuration(back)
            << " after the controller's port accepted\n";
}

TEST_F(SpoolTest, AnAgentKilledWhileTheControllerIsDownLosesNothing) {
  StartController();
  WaitForController();
  Subprocess& first = StartAgent("keep-1");
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto agents = Agents();
        return agents.count("keep-1") && agents["keep-1"].last_sequence() >= 3;
      },
      absl::Seconds(20)))
      << first.Output();
  controller_->Stop();
  absl::SleepFor(absl::Seconds(2));  // about ten rounds spooled with nobody to take them
  first.Kill();                      // SIGKILL: no chance to flush anything

  Subprocess& second = StartAgent("keep-1");
  // The second process finds the first one's rounds and says which.
  std::smatch found;
  const std::regex waiting(R"(\((\d+) bytes\) waiting from before the restart, sequences (\d+)\.\.(\d+))");
  std::string log;
  ASSERT_TRUE(WaitUntil(
      [&] {
        log = second.Output();
        return std::regex_search(log, found, waiting);
      },
      absl::Seconds(10)))
      << log;
  const uint64_t spooled_through = std::stoull(found[3].str());
  EXPECT_GT(spooled_through, 3u);
  absl::SleepFor(absl::Seconds(1));  // and keeps collecting, unnumbered, before any Welcome

  StartController();
  WaitForController();
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto agents = Agents();
        return agents.count("keep-1") && agents["keep-1"].last_sequence() > spooled_through + 3;
      },
      absl::Seconds(20)))
      << second.Output();
  const v1::AgentInfo info = Agents()["keep-1"];
  EXPECT_EQ(info.lost_batches(), 0u) << controller_->Output();
  EXPECT_EQ(Metric("vigil_telemetry_batches_lost_total{reason=\"sequence_gap\"}"), 0);
  EXPECT_EQ(Metric("vigil_telemetry_batches_lost_total{reason=\"agent_dropped\"}"), 0);

  ASSERT_EQ(second.Stop(), 0);
  const std::regex totals(
      R"(telemetry totals: collected=(\d+) sent=(\d+) acknowledged_through=(\d+) dropped=(\d+) refused=(\d+) spooled=(\d+))");
  log = second.Output();
  ASSERT_TRUE(std::regex_search(log, found, totals)) << log;
  EXPECT_GE(std::stoull(found[3].str()), spooled_through);
  EXPECT_EQ(found[4].str(), "0");
  EXPECT_EQ(found[5].str(), "0");
}

TEST_F(SpoolTest, AForcedDropIsLostBatchesOnTheAgentAndOnMetrics) {
  StartController();
  WaitForController();
  // Room for a handful of host rounds only.
  Subprocess& agent = StartAgent("tight-1", 2048);
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto agents = Agents();
        return agents.count("tight-1") && agents["tight-1"].last_sequence() >= 2;
      },
      absl::Seconds(20)))
      << agent.Output();
  controller_->Stop();
  absl::SleepFor(absl::Seconds(4));  // ~20 rounds into a spool that holds a few
  StartController();
  WaitForController();
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto agents = Agents();
        return agents.count("tight-1") && agents["tight-1"].lost_batches() > 0;
      },
      absl::Seconds(20)))
      << agent.Output() << controller_->Output();
  const v1::AgentInfo info = Agents()["tight-1"];
  EXPECT_GE(info.lost_batches(), 5u);
  EXPECT_EQ(Metric("vigil_telemetry_batches_lost_total{reason=\"agent_dropped\"}"),
            static_cast<double>(info.lost_batches()))
      << Metrics();
  EXPECT_TRUE(absl::StrContains(agent.Output(), "is full")) << agent.Output();
  EXPECT_TRUE(absl::StrContains(controller_->Output(), "agent 'tight-1'")) << controller_->Output();

  // The count is on the registry row: it survives a controller restart.
  controller_->Stop();
  StartController();
  WaitForController();
  ASSERT_TRUE(WaitUntil([&] { return Agents().count("tight-1") > 0; }, absl::Seconds(10)));
  EXPECT_GE(Agents()["tight-1"].lost_batches(), info.lost_batches());
}

}  // namespace
}  // namespace vigil
