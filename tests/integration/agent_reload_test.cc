// SIGHUP makes vigil-agent reread its certificate files and reconnect with them, and never kills
// it; files it cannot read keep the certificates in use. Real binaries over mutual TLS with
// certificates from scripts/dev-ca.sh.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/support/process.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;
using testing::Subprocess;
using testing::WaitUntil;

int CountLines(const std::string& text, absl::string_view needle) {
  int count = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    count += absl::StrContains(line, needle);
  }
  return count;
}

class AgentReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CommandResult made = RunCommand(
        {"bash", testing::SourcePath("scripts/dev-ca.sh"), dir_.File("tls"), "--agent", "web-1"});
    ASSERT_EQ(made.exit_code, 0) << made.output;
    // The agent's files, which the test replaces as a certificate renewal would.
    std::filesystem::copy_file(Tls("agent-web-1.pem"), dir_.File("agent.pem"));
    std::filesystem::copy_file(Tls("agent-web-1.key"), dir_.File("agent.key"));
    testing::WriteFile(
        dir_.File("agent.yaml"),
        absl::StrCat("collectors:\n  host: {}\njournal: ", dir_.File("state/web-1.journal"), "\n"));
    const std::string address = absl::StrCat("127.0.0.1:", port_);
    controller_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-controller"), "--listen=" + address,
                                 "--db=" + dir_.File("data/vigil.db"), "--http-listen=off",
                                 "--tls-ca=" + Tls("ca.pem"), "--tls-cert=" + Tls("controller.pem"),
                                 "--tls-key=" + Tls("controller.key")},
        std::map<std::string, std::string>{}, dir_.File("controller.log"));
    agent_ = std::make_unique<Subprocess>(
        std::vector<std::string>{
            BinaryPath("vigil-agent"), "--controller=" + address,
            "--config=" + dir_.File("agent.yaml"), "--id=web-1", "--tls-ca=" + Tls("ca.pem"),
            "--tls-cert=" + dir_.File("agent.pem"), "--tls-key=" + dir_.File("agent.key")},
        std::map<std::string, std::string>{}, dir_.File("agent.log"));
  }

  std::string Tls(absl::string_view name) const { return dir_.File(absl::StrCat("tls/", name)); }
  int Connects() { return CountLines(agent_->Output(), "connected to controller"); }

  testing::TempDir dir_;
  const uint16_t port_ = testing::FreeLoopbackPort();
  std::unique_ptr<Subprocess> controller_;
  std::unique_ptr<Subprocess> agent_;
};

TEST_F(AgentReloadTest, SighupReloadsCertificatesAndKeepsStreaming) {
  ASSERT_TRUE(WaitUntil([&] { return Connects() == 1; }, absl::Seconds(40)))
      << agent_->Output() << controller_->Output();

  // Renewed files: the agent reads them and connects again with them.
  std::filesystem::copy_file(Tls("agent-web-1.pem"), dir_.File("agent.pem"),
                             std::filesystem::copy_options::overwrite_existing);
  agent_->Signal(SIGHUP);
  ASSERT_TRUE(WaitUntil([&] { return Connects() == 2; }, absl::Seconds(40))) << agent_->Output();
  EXPECT_TRUE(absl::StrContains(agent_->Output(), "SIGHUP: reloaded")) << agent_->Output();
  EXPECT_TRUE(agent_->Running());

  // Unreadable files: the old certificates stay, the stream is not touched, the agent lives.
  testing::WriteFile(dir_.File("agent.pem"), "half a certificate");
  agent_->Signal(SIGHUP);
  ASSERT_TRUE(WaitUntil(
      [&] { return absl::StrContains(agent_->Output(), "keeping the certificates in use"); },
      absl::Seconds(10)))
      << agent_->Output();
  EXPECT_TRUE(absl::StrContains(agent_->Output(), "agent.pem")) << agent_->Output();
  EXPECT_TRUE(agent_->Running());
  EXPECT_EQ(Connects(), 2);
  EXPECT_EQ(CountLines(agent_->Output(), "lost the stream"), 0) << agent_->Output();

  // SIGTERM still stops it, cleanly.
  EXPECT_EQ(agent_->Stop(absl::Seconds(10)), 0) << agent_->Output();
}

}  // namespace
}  // namespace vigil
