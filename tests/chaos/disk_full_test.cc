// Disk full (needs root, for a tmpfs): the controller's database lives on a 2 MB tmpfs, which a
// file fills while the controller runs. Proposals, approvals and incident updates then fail with
// a non-zero exit and a message naming the cause; nothing runs and nothing half-written appears.
// Once the file is gone, writes resume by themselves within seconds (no restart), the approved
// command runs once, and `vigil audit verify` passes.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "tests/chaos/chaos_fixture.h"

namespace vigil::chaos {
namespace {

using testing::CommandResult;

bool NamesTheCause(const std::string& output) {
  const std::string lower = absl::AsciiStrToLower(output);
  return absl::StrContains(lower, "full") || absl::StrContains(lower, "space") ||
         absl::StrContains(lower, "storage") || absl::StrContains(lower, "disk");
}

TEST_F(ChaosTest, DiskFullFailsWritesClosedAndRecoversWithoutARestart) {
  if (!IsRoot()) {
    GTEST_SKIP() << "needs root to mount a 2 MB tmpfs under the controller's database (CI runs "
                    "as root)";
  }
  // Unmounted last: after the controller and the agent are gone.
  TmpfsMount tmpfs(dir_.File("data"), "2m");
  ASSERT_TRUE(tmpfs.ok()) << tmpfs.error();
  const std::string alice = AddUser("alice", "commander");
  const std::string bob = AddUser("bob", "commander");
  ChaosController controller(LoopbackController(R"(rules:
  - alert: ChaosAlwaysOn
    expr: host_load1 >= 0
    severity: SEV4
)"));
  ASSERT_TRUE(controller.Start(alice)) << controller.Output();

  const std::string trace = dir_.File("restarts.trace");
  const std::string script = dir_.File("restart.sh");
  testing::WriteFile(script, absl::StrCat("#!/bin/sh\necho \"$1 $(date +%s.%N)\" >> ", trace,
                                          "\nexit 0\n"));
  chmod(script.c_str(), 0755);
  AgentSlot agent;
  agent.id = AgentId("disk-1");
  agent_ids_.push_back(agent.id);
  agent.argv = {testing::BinaryPath("vigil-agent"), "--controller=" + controller.options().listen,
                "--config=" +
                    WriteAgentConfig(agent.id,
                                     absl::StrCat("actions:\n  restart_service: {units: "
                                                  "[\"worker\"]}\nservice_manager: {restart: [",
                                                  script, ", \"{unit}\"]}\ncontroller_public_key: ",
                                                  dir_.File("data/controller-signing.pub"), "\n")),
                "--insecure", "--interval=500ms"};
  StartAgentSlot(agent);

  std::string incident;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        v1::ListIncidentsResponse r;
        CommandResult c = controller.Cli(alice, {"incidents", "-o", "json"});
        if (c.exit_code != 0 ||
            !google::protobuf::util::JsonStringToMessage(c.stdout_text, &r).ok() ||
            r.incidents().empty()) {
          return false;
        }
        incident = r.incidents(0).id();
        return true;
      },
      absl::Seconds(30)))
      << controller.Output();
  auto propose = [&] {
    return controller.Cli(alice, {"action", "propose", incident, "--agent", agent.id, "--action",
                                  "restart_service", "--param", "unit=worker", "-o", "json"});
  };
  CommandResult before = propose();
  v1::ActionProposal waiting;
  ASSERT_EQ(before.exit_code, 0) << before.output;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(before.stdout_text, &waiting).ok());
  auto timeline = [&] {
    v1::GetIncidentResponse shown;
    CommandResult c = controller.Cli(alice, {"incident", "show", incident, "-o", "json"});
    google::protobuf::util::JsonStringToMessage(c.stdout_text, &shown);
    return shown;
  };
  const int events_before = timeline().timeline_size();

  // The disk fills up.
  const int64_t filled = FillDisk(dir_.File("data/filler"));
  ASSERT_GT(filled, 0);
  printf("chaos: filled the 2 MB tmpfs with %lld bytes\n", static_cast<long long>(filled));
  CommandResult note = controller.Cli(bob, {"incident", "note", incident, "chaos-note-disk-full"});
  EXPECT_NE(note.exit_code, 0) << "a note was acknowledged with the disk full: " << note.output;
  EXPECT_TRUE(note.exit_code == 0 || NamesTheCause(note.output))
      << "the error does not name the cause (disk full): " << note.output;
  // Each failed write makes the controller checkpoint and truncate its WAL, which gives the
  // volume some space back (by design): fill that too, so the next write meets a full disk.
  FillDisk(dir_.File("data/filler-2"));
  CommandResult proposal = propose();
  EXPECT_NE(proposal.exit_code, 0) << "a proposal was acknowledged with the disk full: "
                                   << proposal.output;
  EXPECT_TRUE(proposal.exit_code == 0 || NamesTheCause(proposal.output))
      << "the error does not name the cause (disk full): " << proposal.output;
  FillDisk(dir_.File("data/filler-3"));
  CommandResult approval = controller.Cli(bob, {"action", "approve", waiting.id()});
  EXPECT_NE(approval.exit_code, 0) << "an approval was acknowledged with the disk full: "
                                   << approval.output;
  EXPECT_TRUE(approval.exit_code == 0 || NamesTheCause(approval.output))
      << "the error does not name the cause (disk full): " << approval.output;
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(testing::ReadFileOrEmpty(trace), "")
      << "a command ran although its approval could not be stored";
  EXPECT_TRUE(controller.Running()) << controller.Output();

  // Space comes back: writes resume by themselves.
  ASSERT_EQ(unlink(dir_.File("data/filler").c_str()), 0);
  unlink(dir_.File("data/filler-2").c_str());
  unlink(dir_.File("data/filler-3").c_str());
  const absl::Time freed = absl::Now();
  CommandResult resumed;
  const bool back = testing::WaitUntil(
      [&] {
        resumed = controller.Cli(bob, {"incident", "note", incident, "chaos-note-after"});
        return resumed.exit_code == 0;
      },
      absl::Seconds(15), absl::Milliseconds(250));
  EXPECT_TRUE(back) << "writes did not resume within 15 s of freeing the space: "
                    << resumed.output;
  if (back) {
    printf("chaos: writes resumed %s after the space came back\n",
           absl::FormatDuration(absl::Now() - freed).c_str());
    EXPECT_LE(absl::Now() - freed, absl::Seconds(10));
  }

  // Nothing half-written: no event from the failed calls, the waiting proposal still waits, and
  // the refused proposal does not exist.
  v1::GetIncidentResponse after = timeline();
  for (const v1::TimelineEvent& e : after.timeline()) {
    EXPECT_NE(e.summary(), "chaos-note-disk-full") << "a refused note is on the timeline";
  }
  v1::ListActionsResponse listed;
  google::protobuf::util::JsonStringToMessage(
      controller.Cli(alice, {"actions", "--incident", incident, "-o", "json"}).stdout_text,
      &listed);
  int proposals = 0;
  for (const v1::ActionProposal& p : listed.actions()) {
    ++proposals;
    if (p.id() == waiting.id()) {
      EXPECT_EQ(p.state(), v1::PROPOSED)
          << "an approval refused for a full disk changed the proposal: " << p.DebugString();
    }
  }
  EXPECT_EQ(proposals, 1) << "a proposal refused for a full disk exists: " << listed.DebugString();
  printf("chaos: %d timeline events before the disk filled, %d after it was freed\n",
         events_before, after.timeline_size());

  // The approval goes through now, and the command runs once.
  if (back) {
    CommandResult approved = controller.Cli(bob, {"action", "approve", waiting.id()});
    EXPECT_EQ(approved.exit_code, 0) << approved.output;
    EXPECT_TRUE(testing::WaitUntil(
        [&] { return !testing::ReadFileOrEmpty(trace).empty(); }, absl::Seconds(15)))
        << agent.process->Output();
    absl::SleepFor(absl::Seconds(1));
    const std::string runs = testing::ReadFileOrEmpty(trace);
    EXPECT_EQ(std::count(runs.begin(), runs.end(), '\n'), 1) << runs;
  }
  CommandResult verify = controller.Cli(alice, {"audit", "verify"});
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  Report("kills", 0);
  agent.process.reset();
  controller.Kill();
}

}  // namespace
}  // namespace vigil::chaos
