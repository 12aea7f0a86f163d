// Sensing between rounds through the real controller and agents on a real Redis: the controller
// sends its per-agent gauge thresholds, and an agent collecting every 5 s reports a fault on
// the Redis clients long before its next round, while an agent with sensing off waits for it.
// A rule reload sends the new thresholds to the connected agents.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/support/proto_json.h"
#include "tests/support/servers.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::WaitUntil;

constexpr int64_t kIntervalMs = 5000;

// `count` idle connections to 127.0.0.1:`port`, closed on destruction.
class IdleClients {
 public:
  IdleClients(uint16_t port, int count) {
    for (int i = 0; i < count; ++i) {
      const int fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(port);
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
        fds_.push_back(fd);
      } else if (fd >= 0) {
        close(fd);
      }
    }
  }
  ~IdleClients() {
    for (int fd : fds_) close(fd);
  }
  size_t size() const { return fds_.size(); }

 private:
  std::vector<int> fds_;
};

TEST(Sensing, AFaultBetweenRoundsFiresBeforeTheNextRound) {
  testing::TempDir dir;
  testing::RedisServer redis(dir.path());
  ASSERT_TRUE(redis.ok());
  testing::WriteFile(dir.File("rules.yaml"), R"(rules:
  - alert: TooManyRedisClients
    expr: redis_connected_clients{role="cache"} > 20
    for: 0s
    severity: SEV3
)");
  for (const char* id : {"cache-1", "cache-2"}) {
    testing::WriteFile(dir.File(absl::StrCat(id, ".yaml")),
                       absl::StrCat("id: ", id, "\nlabels: {role: cache}\ncollectors:\n",
                                    "  redis: {address: '127.0.0.1:", redis.port(), "'}\n",
                                    "spool_dir: ", dir.File(absl::StrCat(id, ".spool")), "\n"));
  }
  const std::string address = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
  const std::string token = testing::AddVigilUser(dir.File("vigil.db"), "tester", "viewer");
  testing::Subprocess controller(
      {BinaryPath("vigil-controller"), "--listen=" + address, "--db=" + dir.File("vigil.db"),
       "--insecure", "--http-listen=off", "--rules=" + dir.File("rules.yaml")},
      {}, dir.File("controller.log"));
  auto cli = [&](std::vector<std::string> args) {
    args.insert(args.begin(),
                {BinaryPath("vigil"), "--controller=" + address, "--insecure", "--token=" + token});
    return testing::RunCommand(args);
  };
  ASSERT_TRUE(WaitUntil([&] { return cli({"agents"}).exit_code == 0; }, absl::Seconds(10)))
      << controller.Output();
  // Rounds every 5 s, both agents at the same instants (--aligned-rounds: the test places the
  // fault between them); cache-1 checks the thresholds every 100 ms between them, cache-2 never.
  testing::Subprocess sensing(
      {BinaryPath("vigil-agent"), "--controller=" + address, "--config=" + dir.File("cache-1.yaml"),
       "--insecure", "--interval=5s", "--sense-every=100ms", "--aligned-rounds"},
      {}, dir.File("cache-1.log"));
  testing::Subprocess rounds_only(
      {BinaryPath("vigil-agent"), "--controller=" + address, "--config=" + dir.File("cache-2.yaml"),
       "--insecure", "--interval=5s", "--sense-every=0", "--aligned-rounds"},
      {}, dir.File("cache-2.log"));
  ASSERT_TRUE(WaitUntil(
      [&] {
        return absl::StrContains(sensing.Output(),
                                 "watching between rounds: 1 threshold(s); sensed every 100ms: "
                                 "redis_connected_clients");
      },
      absl::Seconds(15)))
      << sensing.Output() << controller.Output();
  // Both streaming: their clients count on Redis.
  ASSERT_TRUE(WaitUntil(
      [&] {
        v1::GetMetricsResponse m1, m2;
        return testing::ParseJson(cli({"metrics", "cache-1", "-o", "json"}).stdout_text, &m1) &&
               testing::ParseJson(cli({"metrics", "cache-2", "-o", "json"}).stdout_text, &m2) &&
               m1.metrics_size() > 0 && m2.metrics_size() > 0;
      },
      absl::Seconds(20)))
      << controller.Output();

  // The fault lands 0.3-0.8 s after a round instant, 4.2 s or more before the next one.
  ASSERT_TRUE(WaitUntil(
      [] {
        const int64_t phase = absl::ToUnixMillis(absl::Now()) % kIntervalMs;
        return phase >= 300 && phase <= 800;
      },
      absl::Seconds(10), absl::Milliseconds(10)));
  const int64_t fault_ms = absl::ToUnixMillis(absl::Now());
  const int64_t next_round_ms = (fault_ms / kIntervalMs + 1) * kIntervalMs;
  IdleClients fault(redis.port(), 30);
  ASSERT_EQ(fault.size(), 30u);

  std::map<std::string, v1::Alert> alerts;  // by agent
  ASSERT_TRUE(WaitUntil(
      [&] {
        v1::ListAlertsResponse r;
        if (!testing::ParseJson(cli({"alerts", "-o", "json"}).stdout_text, &r)) {
          return false;
        }
        for (const v1::Alert& a : r.alerts()) {
          if (a.rule() == "TooManyRedisClients" && a.state() == v1::FIRING) {
            alerts[a.agent_id()] = a;
          }
        }
        return alerts.size() == 2;
      },
      absl::Seconds(20), absl::Milliseconds(100)))
      << controller.Output() << sensing.Output();
  // cache-1's alert starts from a sample taken between rounds, before the next round.
  const v1::Alert& early = alerts["cache-1"];
  EXPECT_GE(early.active_since_unix_ms(), fault_ms);
  EXPECT_LT(early.active_since_unix_ms(), next_round_ms) << early.DebugString();
  EXPECT_NE(early.active_since_unix_ms() % kIntervalMs, 0) << early.DebugString();
  EXPECT_GE(early.value(), 20);
  // cache-2's from the next round.
  const v1::Alert& late = alerts["cache-2"];
  EXPECT_EQ(late.active_since_unix_ms(), next_round_ms) << late.DebugString();

  // A reload with one more threshold reaches the connected agents.
  testing::WriteFile(dir.File("rules.yaml"), R"(rules:
  - alert: TooManyRedisClients
    expr: redis_connected_clients{role="cache"} > 20
    for: 0s
  - alert: RedisMemory
    expr: redis_used_memory_bytes > 1e12
  - alert: FleetClients
    expr: sum(redis_connected_clients) > 1000
)");
  controller.Signal(SIGHUP);
  EXPECT_TRUE(WaitUntil(
      [&] {
        return absl::StrContains(sensing.Output(),
                                 "watching between rounds: 2 threshold(s); sensed every 100ms: "
                                 "redis_connected_clients, redis_used_memory_bytes");
      },
      absl::Seconds(10)))
      << sensing.Output() << controller.Output();
  EXPECT_TRUE(absl::StrContains(controller.Output(), "FleetClients: fleet-wide"))
      << controller.Output();
}

}  // namespace
}  // namespace vigil
