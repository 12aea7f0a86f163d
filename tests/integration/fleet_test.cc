// The walking skeleton end to end with the real binaries on loopback: a controller, agents
// streaming host telemetry, the CLI reading the fleet; disconnection, controller restart,
// duplicate ids and bad input.
#include <arpa/inet.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/support/process.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;
using testing::Subprocess;
using testing::WaitUntil;

class FleetTest : public ::testing::Test {
 protected:
  FleetTest() : port_(testing::FreeLoopbackPort()), address_(absl::StrCat("127.0.0.1:", port_)) {
    testing::WriteFile(dir_.File("agent.yaml"),
                       "labels: {role: api, env: test}\ncollectors:\n  host: {}\n");
  }

  void StartController(const std::vector<std::string>& extra = {}) {
    if (token_.empty()) {
      token_ = testing::AddVigilUser(dir_.File("data/vigil.db"), "tester", "viewer");
    }
    std::vector<std::string> argv{BinaryPath("vigil-controller"), "--listen=" + address_,
                                  "--db=" + dir_.File("data/vigil.db"), "--insecure",
                                  "--http-listen=off"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    controller_ = std::make_unique<Subprocess>(
        argv, std::map<std::string, std::string>{},
        dir_.File(absl::StrCat("controller-", ++controllers_, ".log")));
    ASSERT_TRUE(WaitUntil([&] { return Cli({"agents"}).exit_code == 0; }, absl::Seconds(10)))
        << controller_->Output();
  }

  Subprocess& StartAgent(const std::string& id, const std::string& controller = "") {
    agents_.push_back(std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-agent"),
                                 "--controller=" + (controller.empty() ? address_ : controller),
                                 "--config=" + dir_.File("agent.yaml"), "--id=" + id, "--insecure"},
        std::map<std::string, std::string>{},
        dir_.File(absl::StrCat("agent-", id, "-", agents_.size(), ".log"))));
    return *agents_.back();
  }

  CommandResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {BinaryPath("vigil"), "--controller=" + address_, "--insecure"});
    if (!token_.empty()) {
      args.insert(args.begin() + 1, "--token=" + token_);
    }
    return RunCommand(args, absl::Seconds(15));
  }

  std::map<std::string, v1::AgentInfo> Agents() {
    std::map<std::string, v1::AgentInfo> out;
    CommandResult r = Cli({"agents", "-o", "json"});
    if (r.exit_code != 0) return out;
    v1::ListAgentsResponse response;
    if (!google::protobuf::util::JsonStringToMessage(r.stdout_text, &response).ok()) return out;
    for (const auto& a : response.agents()) out[a.agent_id()] = a;
    return out;
  }

  bool Connected(const std::string& id) {
    auto agents = Agents();
    return agents.count(id) && agents[id].state() == v1::CONNECTED;
  }

  testing::TempDir dir_;
  const uint16_t port_;
  const std::string address_;
  int controllers_ = 0;
  std::unique_ptr<Subprocess> controller_;
  std::string token_;
  std::vector<std::unique_ptr<Subprocess>> agents_;
};

TEST_F(FleetTest, ThreeAgentsAppearConnectedWithHostMetrics) {
  StartController();
  for (const char* id : {"web-1", "web-2", "db-1"}) StartAgent(id);
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto agents = Agents();
        int ready = 0;
        for (const auto& [id, a] : agents) {
          ready += a.state() == v1::CONNECTED && a.cpu_usage_ratio() >= 0 &&
                   a.memory_used_ratio() > 0 && a.disk_used_ratio() > 0;
        }
        return ready == 3;
      },
      absl::Seconds(15)))
      << Cli({"agents"}).output;
  auto agents = Agents();
  EXPECT_EQ(agents["web-1"].labels().at("role"), "api");
  EXPECT_LE(agents["web-1"].memory_used_ratio(), 1.0);

  CommandResult table = Cli({"agents"});
  ASSERT_EQ(table.exit_code, 0);
  for (const char* column : {"ID", "HOST", "ROLE", "STATE", "LAST SEEN", "CPU", "MEM", "DISK"}) {
    EXPECT_TRUE(absl::StrContains(table.stdout_text, column)) << table.stdout_text;
  }
  EXPECT_TRUE(absl::StrContains(table.stdout_text, "connected"));

  CommandResult metrics = Cli({"metrics", "web-1", "-o", "json"});
  ASSERT_EQ(metrics.exit_code, 0) << metrics.output;
  v1::GetMetricsResponse response;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(metrics.stdout_text, &response).ok());
  std::set<std::string> names;
  for (const auto& m : response.metrics()) {
    names.insert(m.name());
    if (m.name() == "host_disk_used_ratio") {
      EXPECT_FALSE(m.labels().at("mount").empty());
    }
  }
  for (const char* name :
       {"host_cpu_usage_ratio", "host_memory_used_ratio", "host_disk_used_ratio", "host_load1"}) {
    EXPECT_TRUE(names.count(name)) << name;
  }
  // proto field names in JSON
  EXPECT_TRUE(absl::StrContains(metrics.stdout_text, "\"agent_id\""));
}

TEST_F(FleetTest, KilledAgentIsShownDisconnectedWithinThreeSeconds) {
  StartController();
  Subprocess& victim = StartAgent("web-1");
  StartAgent("web-2");
  ASSERT_TRUE(
      WaitUntil([&] { return Connected("web-1") && Connected("web-2"); }, absl::Seconds(15)));
  victim.Kill();
  const absl::Time killed = absl::Now();
  ASSERT_TRUE(WaitUntil([&] { return !Connected("web-1"); }, absl::Seconds(3)))
      << "still connected 3 s after SIGKILL";
  EXPECT_LT(absl::Now() - killed, absl::Seconds(3));
  EXPECT_TRUE(Connected("web-2"));
}

TEST_F(FleetTest, SilentAgentIsShownDisconnectedWithinThreeSeconds) {
  StartController();
  Subprocess& frozen = StartAgent("web-1");
  ASSERT_TRUE(WaitUntil([&] { return Connected("web-1"); }, absl::Seconds(15)));
  frozen.Signal(SIGSTOP);  // the connection stays open but nothing comes through
  const absl::Time stopped = absl::Now();
  ASSERT_TRUE(WaitUntil([&] { return !Connected("web-1"); }, absl::Seconds(4)));
  // Silence is counted from the last message, at most one heartbeat (1 s) before the stop.
  EXPECT_LT(absl::Now() - stopped, absl::Seconds(3));
  frozen.Signal(SIGCONT);
  EXPECT_TRUE(WaitUntil([&] { return Connected("web-1"); }, absl::Seconds(15)))
      << "a thawed agent reconnects by itself";
}

TEST_F(FleetTest, ControllerRestartAgentsReturnAndFirstSeenIsKept) {
  StartController();
  for (const char* id : {"web-1", "web-2", "web-3"}) StartAgent(id);
  ASSERT_TRUE(
      WaitUntil([&] { return Connected("web-1") && Connected("web-2") && Connected("web-3"); },
                absl::Seconds(15)));
  auto before = Agents();
  absl::SleepFor(absl::Seconds(1.5));  // the registry writer flushes every second
  ASSERT_EQ(controller_->Stop(), 0) << controller_->Output();
  StartController();
  ASSERT_TRUE(
      WaitUntil([&] { return Connected("web-1") && Connected("web-2") && Connected("web-3"); },
                absl::Seconds(15)))
      << Cli({"agents"}).output;
  auto after = Agents();
  for (const char* id : {"web-1", "web-2", "web-3"}) {
    EXPECT_EQ(after[id].first_seen_unix_ms(), before[id].first_seen_unix_ms()) << id;
    EXPECT_GE(after[id].last_sequence(), before[id].last_sequence()) << id;
  }
  // One line per change of state in the agent's log, not one per retry.
  const std::string log = agents_[0]->Output();
  int lost = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n'))
    lost += absl::StrContains(line, "controller");
  EXPECT_LE(lost, 6) << log;
}

TEST_F(FleetTest, SecondControllerOnTheSameDatabaseRefusesToStart) {
  StartController();
  const int other_port = testing::FreeLoopbackPort();
  CommandResult second =
      RunCommand({BinaryPath("vigil-controller"), absl::StrCat("--listen=127.0.0.1:", other_port),
                  "--db=" + dir_.File("data/vigil.db"), "--insecure", "--http-listen=off"},
                 absl::Seconds(15));
  EXPECT_EQ(second.exit_code, 1) << second.output;
  EXPECT_TRUE(absl::StrContains(second.output, dir_.File("data/vigil.db")) &&
              absl::StrContains(second.output, absl::StrCat("pid ", controller_->pid())))
      << second.output;
  // Short-lived tools still work beside the running server, and it keeps serving.
  EXPECT_FALSE(testing::AddVigilUser(dir_.File("data/vigil.db"), "another", "viewer").empty());
  EXPECT_EQ(Cli({"agents"}).exit_code, 0);
}

// The accept queue (Send-Q of a listening socket in ss) of whatever listens on 127.0.0.1:PORT.
std::string AcceptQueueOf(int port) {
  CommandResult ss = RunCommand({"ss", "-Hltn", absl::StrCat("sport = :", port)});
  std::vector<std::string> fields = absl::StrSplit(ss.stdout_text, ' ', absl::SkipWhitespace());
  return fields.size() >= 3 && fields[0] == "LISTEN" ? fields[2] : "ss: " + ss.output;
}

TEST_F(FleetTest, AgentsOnTheirOwnAddressWaitInAShortQueueAndTheCliKeepsItsOwn) {
  const std::string agents = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
  StartController({"--agent-listen=" + agents, "--agent-listen-backlog=3"});
  StartAgent("web-1", agents);
  ASSERT_TRUE(WaitUntil([&] { return Connected("web-1"); }, absl::Seconds(15)))
      << controller_->Output();
  const int agent_port = std::stoi(agents.substr(agents.rfind(':') + 1));
  EXPECT_EQ(AcceptQueueOf(agent_port), "3");
  const std::string cli_queue = AcceptQueueOf(port_);
  EXPECT_NE(cli_queue, "3");
  EXPECT_GT(std::atoi(cli_queue.c_str()), 3) << cli_queue;
  EXPECT_TRUE(absl::StrContains(controller_->Output(), "accept queue 3")) << controller_->Output();

  // One port for both is refused at start (gRPC would split its connections between two queues).
  CommandResult same = RunCommand(
      {BinaryPath("vigil-controller"), "--listen=127.0.0.1:0", "--agent-listen=127.0.0.1:0",
       "--db=" + dir_.File("other/vigil.db"), "--insecure", "--http-listen=off", "--check-config"},
      absl::Seconds(15));
  EXPECT_EQ(same.exit_code, 0) << "port 0 is two ports: " << same.output;
  same = RunCommand(
      {BinaryPath("vigil-controller"), "--listen=" + address_,
       "--agent-listen=localhost:" + std::to_string(port_), "--db=" + dir_.File("other/vigil.db"),
       "--insecure", "--http-listen=off", "--check-config"},
      absl::Seconds(15));
  EXPECT_EQ(same.exit_code, 1) << same.output;
  EXPECT_TRUE(absl::StrContains(same.output, "give the agents a port of their own")) << same.output;
  // Plain text stays on loopback on the agents' address too.
  CommandResult open = RunCommand(
      {BinaryPath("vigil-controller"), "--listen=127.0.0.1:0", "--agent-listen=0.0.0.0:7444",
       "--db=" + dir_.File("other/vigil.db"), "--insecure", "--http-listen=off"},
      absl::Seconds(15));
  EXPECT_EQ(open.exit_code, 1) << open.output;
  EXPECT_TRUE(absl::StrContains(open.output, "0.0.0.0:7444")) << open.output;
}

TEST_F(FleetTest, DuplicateIdIsRefusedOnBothSides) {
  StartController();
  StartAgent("web-1");
  ASSERT_TRUE(WaitUntil([&] { return Connected("web-1"); }, absl::Seconds(15)));
  const std::string peer = Agents()["web-1"].peer();
  Subprocess& impostor = StartAgent("web-1");
  ASSERT_TRUE(
      WaitUntil([&] { return absl::StrContains(impostor.Output(), "refused agent 'web-1'"); },
                absl::Seconds(10)))
      << impostor.Output();
  EXPECT_TRUE(absl::StrContains(impostor.Output(), "already connected")) << impostor.Output();
  EXPECT_TRUE(absl::StrContains(controller_->Output(), "refusing the second connection"))
      << controller_->Output();
  // No silent takeover: the first stream keeps the id.
  absl::SleepFor(absl::Seconds(2));
  auto agents = Agents();
  EXPECT_EQ(agents["web-1"].state(), v1::CONNECTED);
  EXPECT_EQ(agents["web-1"].peer(), peer);
}

TEST_F(FleetTest, GarbageOnTheGrpcPortDoesNotHurtTheController) {
  StartController();
  for (int round = 0; round < 20; ++round) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    std::string junk =
        round % 2 ? "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                  : std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + std::string(5000, '\xff');
    (void)!write(fd, junk.data(), junk.size());
    close(fd);
  }
  StartAgent("web-1");
  EXPECT_TRUE(WaitUntil([&] { return Connected("web-1"); }, absl::Seconds(15)));
  EXPECT_TRUE(controller_->Running());
}

TEST_F(FleetTest, CliErrorsAreOneLineWithExitCodes) {
  // Nothing listens on this port.
  CommandResult unreachable = Cli({"agents"});
  EXPECT_EQ(unreachable.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(unreachable.output, address_)) << unreachable.output;
  EXPECT_EQ(std::count(unreachable.output.begin(), unreachable.output.end(), '\n'), 1)
      << unreachable.output;

  StartController();
  CommandResult unknown = Cli({"metrics", "nope"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(unknown.output, "agent 'nope' not found")) << unknown.output;

  CommandResult bad_flag = Cli({"agents", "--colour"});
  EXPECT_EQ(bad_flag.exit_code, 2) << bad_flag.output;
}

TEST(AgentConfigErrors, RefusedAtStartWithFileLineAndKey) {
  testing::TempDir dir;
  auto run = [&](const std::string& config_path) {
    return RunCommand({BinaryPath("vigil-agent"), "--controller=127.0.0.1:1", "--insecure",
                       "--config=" + config_path},
                      absl::Seconds(10));
  };
  CommandResult missing = run(dir.File("missing.yaml"));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(missing.output, dir.File("missing.yaml"))) << missing.output;

  testing::WriteFile(dir.File("bad.yaml"), "collectors: {host: {}\n");
  CommandResult not_yaml = run(dir.File("bad.yaml"));
  EXPECT_EQ(not_yaml.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(not_yaml.output, "bad.yaml:")) << not_yaml.output;

  testing::WriteFile(dir.File("key.yaml"), "id: a\ncollectors:\n  host: {}\ncolectors: {}\n");
  CommandResult unknown_key = run(dir.File("key.yaml"));
  EXPECT_EQ(unknown_key.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(unknown_key.output, "key.yaml:4")) << unknown_key.output;
  EXPECT_TRUE(absl::StrContains(unknown_key.output, "'colectors'")) << unknown_key.output;

  testing::WriteFile(dir.File("type.yaml"), "collectors:\n  host: {top_processes: lots}\n");
  CommandResult wrong_type = run(dir.File("type.yaml"));
  EXPECT_EQ(wrong_type.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(wrong_type.output, "type.yaml:2")) << wrong_type.output;
  EXPECT_TRUE(absl::StrContains(wrong_type.output, "top_processes")) << wrong_type.output;

  chmod(dir.path().c_str(), 0755);
  testing::WriteFile(dir.File("secret.yaml"), "collectors: {host: {}}\n");
  chmod(dir.File("secret.yaml").c_str(), 0);
  if (geteuid() != 0) {  // root reads anything
    CommandResult unreadable = run(dir.File("secret.yaml"));
    EXPECT_EQ(unreadable.exit_code, 2);
  }
}

}  // namespace
}  // namespace vigil
