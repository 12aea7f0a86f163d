// Hostile and broken files given to the real binaries: each ends in a `file:line` error and an
// ordinary non-zero exit, never a crash (std::terminate would exit with SIGABRT, 134); and the
// agent's command journal fails closed at start.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/support/hostile_yaml.h"
#include "tests/support/process.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;

class HostileFilesTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    testing::WriteFile(dir_.File(name), text);
    return dir_.File(name);
  }
  testing::TempDir dir_;
};

TEST_F(HostileFilesTest, CheckRulesReportsEveryHostileFile) {
  int n = 0;
  for (const testing::HostileYaml& c : testing::HostileYamlCases("rules")) {
    SCOPED_TRACE(c.name);
    const std::string path = Write(absl::StrCat("rules-", n++, ".yaml"), c.text);
    CommandResult r = RunCommand({BinaryPath("vigil-controller"), "check-rules", path});
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(absl::StrContains(r.output, path + (c.has_line ? ":" : ""))) << r.output;
  }
  CommandResult directory =
      RunCommand({BinaryPath("vigil-controller"), "check-rules", dir_.path()});
  EXPECT_EQ(directory.exit_code, 1) << directory.output;
  EXPECT_TRUE(absl::StrContains(directory.output, dir_.path() + ": is a directory"))
      << directory.output;
}

TEST_F(HostileFilesTest, TheControllerRefusesAHostilePolicyOrRuleFile) {
  const std::string bad = Write("bad.yaml", "? [a, b]\n: 1\n");
  for (const std::string flag : {"--policy=", "--rules="}) {
    CommandResult r =
        RunCommand({BinaryPath("vigil-controller"), "--listen=127.0.0.1:0",
                    "--db=" + dir_.File("vigil.db"), "--insecure", "--http-listen=off", flag + bad},
                   absl::Seconds(20));
    EXPECT_EQ(r.exit_code, 1) << flag << r.output;
    EXPECT_TRUE(absl::StrContains(r.output, bad + ":1")) << flag << r.output;
  }
}

TEST_F(HostileFilesTest, TheAgentRefusesEveryHostileConfig) {
  int n = 0;
  for (const testing::HostileYaml& c : testing::HostileYamlCases("collectors")) {
    SCOPED_TRACE(c.name);
    const std::string path = Write(absl::StrCat("agent-", n++, ".yaml"), c.text);
    CommandResult r = RunCommand(
        {BinaryPath("vigil-agent"), "--config=" + path, "--insecure", "--controller=127.0.0.1:1"},
        absl::Seconds(20));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_TRUE(absl::StrContains(r.output, "bad config: " + path + (c.has_line ? ":" : "")))
        << r.output;
  }
  CommandResult directory = RunCommand({BinaryPath("vigil-agent"), "--config=" + dir_.path(),
                                        "--insecure", "--controller=127.0.0.1:1"},
                                       absl::Seconds(20));
  EXPECT_EQ(directory.exit_code, 2) << directory.output;
  EXPECT_TRUE(absl::StrContains(directory.output, "is a directory")) << directory.output;
}

// An agent that runs commands and whose journal was deleted refuses to start, says why, and
// starts again only with --init-journal.
TEST_F(HostileFilesTest, TheAgentRefusesToStartWithoutItsJournal) {
  const std::string journal = dir_.File("state/web-1.journal");
  const std::string config = Write(
      "agent.yaml", absl::StrCat("id: web-1\ncollectors: {host: {}}\njournal: ", journal, "\n"));
  auto start = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {BinaryPath("vigil-agent"), "--config=" + config, "--insecure",
                                     "--controller=127.0.0.1:1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<testing::Subprocess>(
        argv, std::map<std::string, std::string>{},
        dir_.File(absl::StrCat("agent-", extra.size(), "-", getpid(), ".log")));
  };
  {
    // First install: created without a flag, and the agent runs.
    auto agent = start({});
    ASSERT_TRUE(
        testing::WaitUntil([&] { return std::filesystem::exists(journal); }, absl::Seconds(10)))
        << agent->Output();
    EXPECT_TRUE(agent->Running()) << agent->Output();
    agent->Stop();
  }
  ASSERT_EQ(unlink(journal.c_str()), 0);
  CommandResult refused = RunCommand(
      {BinaryPath("vigil-agent"), "--config=" + config, "--insecure", "--controller=127.0.0.1:1"},
      absl::Seconds(20));
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_TRUE(absl::StrContains(refused.output, journal + " is missing")) << refused.output;
  EXPECT_TRUE(absl::StrContains(refused.output, "--init-journal")) << refused.output;
  EXPECT_FALSE(std::filesystem::exists(journal));

  testing::WriteFile(journal, "vigil-agent command journal v2\n1 cmd-1 00000000\n");
  refused = RunCommand(
      {BinaryPath("vigil-agent"), "--config=" + config, "--insecure", "--controller=127.0.0.1:1"},
      absl::Seconds(20));
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_TRUE(absl::StrContains(refused.output, journal + ":2 (byte 31): garbled entry"))
      << refused.output;

  ASSERT_EQ(unlink(journal.c_str()), 0);
  auto agent = start({"--init-journal"});
  ASSERT_TRUE(
      testing::WaitUntil([&] { return std::filesystem::exists(journal); }, absl::Seconds(10)))
      << agent->Output();
  EXPECT_TRUE(agent->Running()) << agent->Output();
}

}  // namespace
}  // namespace vigil
