// The packaged way to run the daemons, with the real binaries: settings from YAML files (flags
// win), `--check-config` as Ansible's `validate:` calls it (a temp file of any name; exit 0 or 1
// with file and line; nothing created, nothing bound), readiness over $NOTIFY_SOCKET around
// start, SIGHUP and stop, and an agent whose YAML names its TLS files connecting over mutual TLS
// to a controller whose YAML names its own.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/support/notify_listener.h"
#include "tests/support/process.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::NotifyListener;
using testing::RunCommand;
using testing::Subprocess;
using testing::TempDir;
using testing::WaitUntil;
using testing::WriteFile;

bool Exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

class CheckConfigTest : public ::testing::Test {
 protected:
  // One development CA for the suite: openssl takes seconds on a busy machine.
  static void SetUpTestSuite() {
    tls_dir_ = new TempDir();
    CommandResult made = RunCommand({"bash", testing::SourcePath("scripts/dev-ca.sh"),
                                     tls_dir_->File("tls"), "--agent", "web-1"});
    ASSERT_EQ(made.exit_code, 0) << made.output;
  }
  static void TearDownTestSuite() {
    delete tls_dir_;
    tls_dir_ = nullptr;
  }
  static std::string Tls(const std::string& name) { return tls_dir_->File("tls/" + name); }

  // A controller config as a package would ship it, with state under the test's folder.
  std::string ControllerYaml(const std::string& listen) {
    return absl::StrCat("# vigil-controller settings\n", "listen: ", listen, "\n",
                        "db: ", dir_.File("state/vigil.db"), "\n", "http_listen: 'off'\n",
                        "tls_ca: ", Tls("ca.pem"), "\n", "tls_cert: ", Tls("controller.pem"), "\n",
                        "tls_key: ", Tls("controller.key"), "\n", "admission_queue: 64\n");
  }
  std::string AgentYaml(const std::string& controller) {
    return absl::StrCat("id: web-1\n", "controller: ", controller, "\n", "collectors:\n",
                        "  host: {}\n", "actions:\n", "  restart_service: {units: [\"app@*\"]}\n",
                        "tls:\n", "  ca: ", Tls("ca.pem"), "\n", "  cert: ", Tls("agent-web-1.pem"),
                        "\n", "  key: ", Tls("agent-web-1.key"), "\n", "journal: ",
                        dir_.File("state/web-1.journal"), "\n");
  }
  // Ansible's `validate:` hands over a temp file with a name of its own.
  std::string AnsibleTemp(const std::string& text) {
    const std::string path = dir_.File(absl::StrCat(".ansible_tmp", ++files_, "agent.yaml"));
    WriteFile(path, text);
    return path;
  }

  static TempDir* tls_dir_;
  TempDir dir_;
  int files_ = 0;
};

TempDir* CheckConfigTest::tls_dir_ = nullptr;

TEST_F(CheckConfigTest, ControllerAcceptsASoundFileAndNamesEveryProblemWithFileAndLine) {
  std::string file = AnsibleTemp(ControllerYaml("0.0.0.0:7443"));
  CommandResult r = RunCommand({BinaryPath("vigil-controller"), "--check-config", "--config", file},
                               absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.stdout_text, file + ": OK\n");
  EXPECT_FALSE(Exists(dir_.File("state"))) << "no database, folder or key";

  file = AnsibleTemp(absl::StrCat(ControllerYaml("0.0.0.0:7443"),
                                                    "telemetry_max_skew: soon\nlisten_on: x\n"));
  r = RunCommand({BinaryPath("vigil-controller"), "--check-config", "--config", file},
                 absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, file + ":9: key 'telemetry_max_skew'")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, file + ":10: unknown key 'listen_on'")) << r.output;

  // The key is not the certificate's: the file and line that named it.
  const std::string mismatched =
      AnsibleTemp(absl::StrCat("listen: 0.0.0.0:7443\ndb: ", dir_.File("state/vigil.db"),
                               "\ntls_ca: ", Tls("ca.pem"), "\ntls_cert: ", Tls("controller.pem"),
                               "\ntls_key: ", Tls("agent-web-1.key"), "\n"));
  r = RunCommand({BinaryPath("vigil-controller"), "--check-config", "--config", mismatched},
                 absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, mismatched + ":5: key 'tls_key': " +
                                              Tls("agent-web-1.key") + " is not the key of"))
      << r.output;

  // A rule file with an error: its own file and line; a policy file that is not there: the line
  // that names it.
  WriteFile(dir_.File("rules.yaml"), "rules:\n  - alert: A\n    expr: bogus(x) > 1\n");
  file = AnsibleTemp(absl::StrCat(ControllerYaml("0.0.0.0:7443"), "policy: ",
                                  dir_.File("policy.yaml"), "\n"));
  r = RunCommand({BinaryPath("vigil-controller"), "--check-config", "--config", file, "--rules",
                  dir_.File("rules.yaml")},
                 absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, dir_.File("rules.yaml") + ":3")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, file + ":9: key 'policy': " + dir_.File("policy.yaml") +
                                              ": cannot read"))
      << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, file + ": 2 error(s)")) << r.output;

  // A named file that is not there; bad usage.
  r = RunCommand({BinaryPath("vigil-controller"), "--check-config", "--config",
                  dir_.File("missing.yaml")},
                 absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, dir_.File("missing.yaml"))) << r.output;
  r = RunCommand({BinaryPath("vigil-controller"), "--check-config", "--no-such-flag"},
                 absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_FALSE(Exists(dir_.File("state")));
}

TEST_F(CheckConfigTest, AgentAcceptsASoundFileAndNamesEveryProblemWithFileAndLine) {
  std::string file = AnsibleTemp(AgentYaml("ctl.example:7443"));
  CommandResult r =
      RunCommand({BinaryPath("vigil-agent"), "--check-config", "--config", file}, absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.stdout_text, file + ": OK\n");
  EXPECT_FALSE(Exists(dir_.File("state"))) << "no journal, results or spool";

  // A collector the agent does not have (line 5).
  std::string text = AgentYaml("ctl.example:7443");
  text.replace(text.find("  host: {}"), 10, "  host: {}\n  nginxx: {}");
  file = AnsibleTemp(text);
  r = RunCommand({BinaryPath("vigil-agent"), "--check-config", "--config", file}, absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, file + ":5: unknown collector 'nginxx'")) << r.output;

  // An action's bad option, and TLS files that do not belong together: both reported.
  text = AgentYaml("ctl.example:7443");
  text.replace(text.find("units: [\"app@*\"]"), 16, "unitz: [app]");
  text.replace(text.find(Tls("agent-web-1.key")), Tls("agent-web-1.key").size(),
               Tls("controller.key"));
  file = AnsibleTemp(text);
  r = RunCommand({BinaryPath("vigil-agent"), "--check-config", "--config", file}, absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, file + ":6")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "unitz")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, file + ":10: key 'tls.key': " + Tls("controller.key") +
                                              " is not the key of " + file +
                                              ":9: key 'tls.cert'"))
      << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, file + ": 2 error(s)")) << r.output;

  // Flags win over the file: a readable key on the command line mends it.
  r = RunCommand({BinaryPath("vigil-agent"), "--check-config", "--config",
                  AnsibleTemp(AgentYaml("ctl.example:7443")), "--tls-key", dir_.File("gone.key")},
                 absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "--tls-key=" + dir_.File("gone.key") + ": cannot read"))
      << r.output;
  r = RunCommand({BinaryPath("vigil-agent"), "--check-config", "--config", dir_.File("nope.yaml")},
                 absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, dir_.File("nope.yaml"))) << r.output;
  EXPECT_FALSE(Exists(dir_.File("state")));
}

// Both daemons from their YAML files over mutual TLS, each telling a service manager when it
// serves, reloads and stops. The controller's file names an address it cannot listen on, which
// the command line overrides: starting at all proves the flag won.
TEST_F(CheckConfigTest, BothDaemonsFromTheirFilesNotifyReadinessReloadAndStop) {
  NotifyListener controller_notify(absl::StrCat("@vigil-test-controller-", getpid()));
  NotifyListener agent_notify(dir_.File("agent-notify"));
  ASSERT_TRUE(controller_notify.bound() && agent_notify.bound());
  const uint16_t port = testing::FreeLoopbackPort();
  const std::string address = absl::StrCat("127.0.0.1:", port);
  WriteFile(dir_.File("controller.yaml"), ControllerYaml("192.0.2.1:7443"));
  Subprocess controller({BinaryPath("vigil-controller"), "--config", dir_.File("controller.yaml"),
                         "--listen", address},
                        {{"NOTIFY_SOCKET", controller_notify.name()}}, dir_.File("controller.log"));
  EXPECT_EQ(controller_notify.Receive(absl::Seconds(20)), "READY=1") << controller.Output();
  EXPECT_TRUE(Exists(dir_.File("state/vigil.db"))) << "READY=1 comes after the start";

  WriteFile(dir_.File("agent.yaml"), AgentYaml(address));
  Subprocess agent({BinaryPath("vigil-agent"), "--config", dir_.File("agent.yaml")},
                   {{"NOTIFY_SOCKET", agent_notify.name()}}, dir_.File("agent.log"));
  EXPECT_EQ(agent_notify.Receive(absl::Seconds(20)), "READY=1") << agent.Output();
  EXPECT_TRUE(Exists(dir_.File("state/web-1.journal"))) << "READY=1 comes after the journal";
  // The TLS files named in agent.yaml are the agent's identity.
  EXPECT_TRUE(WaitUntil(
      [&] { return absl::StrContains(controller.Output(), "agent 'web-1' connected"); },
      absl::Seconds(20)))
      << controller.Output() << agent.Output();

  for (const auto& [process, notify] :
       std::initializer_list<std::pair<Subprocess*, NotifyListener*>>{
           {&controller, &controller_notify}, {&agent, &agent_notify}}) {
    process->Signal(SIGHUP);
    const std::string reloading = notify->Receive(absl::Seconds(10));
    EXPECT_TRUE(absl::StartsWith(reloading, "RELOADING=1\nMONOTONIC_USEC=")) << reloading;
    EXPECT_EQ(notify->Receive(absl::Seconds(10)), "READY=1");
    EXPECT_TRUE(process->Running());
  }
  EXPECT_EQ(agent.Stop(), 0);
  EXPECT_EQ(agent_notify.Receive(absl::Seconds(5)), "STOPPING=1");
  EXPECT_EQ(controller.Stop(), 0);
  EXPECT_EQ(controller_notify.Receive(absl::Seconds(5)), "STOPPING=1");
}

}  // namespace
}  // namespace vigil
