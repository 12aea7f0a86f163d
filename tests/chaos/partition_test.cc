// Partition (needs root, for a network namespace): an agent runs inside a namespace the test
// owns, joined to the root namespace by a veth pair on a private /30, and streams over mutual
// TLS to a controller listening on the root side's address. The link goes down, and nftables
// inside the namespace drops a share of the packets both ways, at points and for times drawn from
// the seed; then the network heals. The agent comes back, and nothing acknowledged is lost (or
// each gap is recorded), as in the kill scenario. Traffic stays in the namespace's veth pair.
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tests/chaos/chaos_fixture.h"
#include "tests/chaos/telemetry_check.h"

namespace vigil::chaos {
namespace {

using testing::CommandResult;
using testing::RunCommand;

TEST_F(ChaosTest, PartitionAndPacketLossLoseNothingAcknowledged) {
  if (!IsRoot()) {
    GTEST_SKIP() << "needs root to create a network namespace and nftables rules (CI runs as "
                    "root)";
  }
  if (RunCommand({"nft", "--version"}).exit_code != 0) {
    GTEST_FAIL() << "nft is not installed (scripts/install-deps.sh installs nftables)";
  }
  NetNamespace ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  const std::string agent_id = AgentId("part-1");
  agent_ids_.push_back(agent_id);

  // Certificates: the dev CA, the agent's and the CLI user's, and a server certificate naming
  // the veth address (the dev CA's names loopback and this host only).
  const std::string tls = dir_.File("tls");
  CommandResult made = RunCommand({"bash", testing::SourcePath("scripts/dev-ca.sh"), tls,
                                   "--agent", agent_id, "--user", "chaos"});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  CommandResult server = RunCommand(
      {"bash", "-c",
       absl::StrCat("set -e; cd ", tls,
                    "; openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                    "-keyout partition.key -subj /CN=vigil-controller -out partition.csr "
                    "2>/dev/null; printf 'subjectAltName=IP:",
                    ns.outer_address(),
                    "\\nextendedKeyUsage=serverAuth\\n' > partition.ext; openssl x509 -req -in "
                    "partition.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out "
                    "partition.pem -extfile partition.ext 2>/dev/null; chmod 600 partition.key")});
  ASSERT_EQ(server.exit_code, 0) << server.output;

  const std::string token = AddUser("chaos", "viewer");
  ControllerOptions options;
  options.db = db();
  options.listen = absl::StrCat(ns.outer_address(), ":", testing::FreeLoopbackPort());
  options.log_dir = dir_.path();
  options.transport = {"--tls-ca=" + tls + "/ca.pem", "--tls-cert=" + tls + "/partition.pem",
                       "--tls-key=" + tls + "/partition.key"};
  options.cli_transport = {"--tls-ca=" + tls + "/ca.pem", "--tls-cert=" + tls + "/user-chaos.pem",
                           "--tls-key=" + tls + "/user-chaos.key"};
  ChaosController controller(options);
  ASSERT_TRUE(controller.Start(token)) << controller.Output();

  std::vector<AgentSlot> agents(1);
  agents[0].id = agent_id;
  agents[0].argv = ns.Exec({testing::BinaryPath("vigil-agent"),
                            "--controller=" + controller.options().listen,
                            "--config=" + WriteAgentConfig(agent_id), "--interval=200ms",
                            "--tls-ca=" + tls + "/ca.pem",
                            "--tls-cert=" + tls + "/agent-" + agent_id + ".pem",
                            "--tls-key=" + tls + "/agent-" + agent_id + ".key"});
  StartAgentSlot(agents[0]);
  TelemetryWatch watch(controller, token, agents);
  ASSERT_TRUE(watch.WaitStreaming(absl::Seconds(20), 3))
      << watch.LastError() << "\n" << agents[0].process->Output();
  ASSERT_TRUE(watch.Calibrate(absl::Seconds(2))) << watch.LastError();

  const int faults = rng_.Int(2, 4) * ChaosScale();
  for (int i = 0; i < faults; ++i) {
    absl::SleepFor(rng_.Between(absl::Milliseconds(500), absl::Seconds(3)));
    const absl::Duration length = rng_.Between(absl::Seconds(1), absl::Seconds(4));
    if (rng_.Chance(0.5)) {
      printf("chaos fault: link down for %s\n", absl::FormatDuration(length).c_str());
      ASSERT_TRUE(ns.SetLink(false)) << ns.error();
      absl::SleepFor(length);
      ASSERT_TRUE(ns.SetLink(true)) << ns.error();
    } else {
      const int percent = rng_.Int(20, 60);
      printf("chaos fault: nftables drops %d%% of packets for %s\n", percent,
             absl::FormatDuration(length).c_str());
      ASSERT_TRUE(ns.DropPackets(percent)) << ns.error();
      absl::SleepFor(length);
      ASSERT_TRUE(ns.DropPackets(0)) << ns.error();
    }
    watch.Observe();
  }

  // Healed: the agent streams again, and its batches are accounted for.
  EXPECT_TRUE(watch.WaitStreaming(absl::Seconds(30), 5))
      << "the agent did not come back after the network healed: " << watch.LastError();
  const TelemetryVerdict verdict = watch.StopAndCheck(agents);
  verdict.ReportTo("partition");
  for (const std::string& v : verdict.violations) {
    ADD_FAILURE() << v;
  }
  controller.Kill();
}

}  // namespace
}  // namespace vigil::chaos
