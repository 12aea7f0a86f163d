// Transport security end to end with the real binaries and certificates from scripts/dev-ca.sh:
// an agent whose certificate names its id connects over mutual TLS; one whose certificate names
// another host is refused on both sides; a pod's agent with its workload's NAME.pods.vigil
// certificate connects, and one whose id is not NAME-SUFFIX is refused; the CLI needs a client
// certificate; plain text is refused off loopback; and the CLI does not run until TLS or
// --insecure is chosen.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
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

// Set to empty, so that a developer's exported VIGIL_TLS_* or VIGIL_INSECURE cannot change what
// the CLI is given here.
const std::map<std::string, std::string> kNoTransportEnvironment = {
    {"VIGIL_TLS_CA", ""}, {"VIGIL_TLS_CERT", ""}, {"VIGIL_TLS_KEY", ""}, {"VIGIL_INSECURE", ""}};

int CountLines(const std::string& text, absl::string_view needle) {
  int count = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    count += absl::StrContains(line, needle);
  }
  return count;
}

class TlsTest : public ::testing::Test {
 protected:
  TlsTest() : port_(testing::FreeLoopbackPort()), address_(absl::StrCat("127.0.0.1:", port_)) {
    testing::WriteFile(dir_.File("agent.yaml"), "labels: {role: api}\ncollectors:\n  host: {}\n");
  }

  void SetUp() override {
    CommandResult made =
        RunCommand({"bash", testing::SourcePath("scripts/dev-ca.sh"), dir_.File("tls"), "--agent",
                    "web-1", "--agent", "web-2", "--pod", "web", "--user", "admin"});
    ASSERT_EQ(made.exit_code, 0) << made.output;
    // A controller with API tokens needs one from the CLI as well as a certificate: make an admin
    // (the token is the one line on stdout). One without them refuses the subcommand and needs
    // none.
    CommandResult user = RunCommand({BinaryPath("vigil-controller"), "users", "add", "tls-admin",
                                     "--role", "admin", "--db=" + dir_.File("data/vigil.db")});
    if (user.exit_code == 0) {
      token_ = std::string(absl::StripAsciiWhitespace(user.stdout_text));
    }
  }

  // The CLI's environment: no transport settings from the developer's shell, and the token.
  std::map<std::string, std::string> CliEnvironment(
      std::map<std::string, std::string> extra = kNoTransportEnvironment) const {
    extra["VIGIL_TOKEN"] = token_;
    return extra;
  }

  std::string Tls(absl::string_view name) const { return dir_.File(absl::StrCat("tls/", name)); }

  void StartController() {
    controller_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-controller"), "--listen=" + address_,
                                 "--db=" + dir_.File("data/vigil.db"), "--http-listen=off",
                                 "--tls-ca=" + Tls("ca.pem"), "--tls-cert=" + Tls("controller.pem"),
                                 "--tls-key=" + Tls("controller.key")},
        std::map<std::string, std::string>{}, dir_.File("controller.log"));
    ASSERT_TRUE(WaitUntil([&] { return Cli({"agents"}).exit_code == 0; }, absl::Seconds(10)))
        << controller_->Output() << Cli({"agents"}).output;
  }

  // An agent with id `id` that presents the certificate agent-`cert`.pem.
  Subprocess& StartAgent(const std::string& id, const std::string& cert) {
    return StartAgentWithFiles(id, absl::StrCat("agent-", cert));
  }

  // An agent with id `id` that presents the certificate `base`.pem and key `base`.key.
  Subprocess& StartAgentWithFiles(const std::string& id, const std::string& base) {
    agents_.push_back(std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-agent"), "--controller=" + address_,
                                 "--config=" + dir_.File("agent.yaml"), "--id=" + id,
                                 "--tls-ca=" + Tls("ca.pem"),
                                 "--tls-cert=" + Tls(absl::StrCat(base, ".pem")),
                                 "--tls-key=" + Tls(absl::StrCat(base, ".key"))},
        std::map<std::string, std::string>{},
        dir_.File(absl::StrCat("agent-", id, "-", agents_.size(), ".log"))));
    return *agents_.back();
  }

  // The CLI as user "admin" over mutual TLS.
  CommandResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(),
                {BinaryPath("vigil"), "--controller=" + address_, "--tls-ca=" + Tls("ca.pem"),
                 "--tls-cert=" + Tls("user-admin.pem"), "--tls-key=" + Tls("user-admin.key")});
    return RunCommand(args, absl::Seconds(15), CliEnvironment());
  }

  std::map<std::string, v1::AgentInfo> Agents() {
    std::map<std::string, v1::AgentInfo> out;
    CommandResult r = Cli({"agents", "-o", "json"});
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

  bool Connected(const std::string& id) {
    auto agents = Agents();
    return agents.count(id) > 0 && agents[id].state() == v1::CONNECTED;
  }

  testing::TempDir dir_;
  const uint16_t port_;
  const std::string address_;
  std::string token_;
  std::unique_ptr<Subprocess> controller_;
  std::vector<std::unique_ptr<Subprocess>> agents_;
};

TEST_F(TlsTest, AgentWhoseCertificateNamesItsIdConnects) {
  StartController();
  StartAgent("web-1", "web-1");
  ASSERT_TRUE(WaitUntil([&] { return Connected("web-1"); }, absl::Seconds(15)))
      << agents_.back()->Output() << controller_->Output();
  CommandResult table = Cli({"agents"});
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_TRUE(absl::StrContains(table.stdout_text, "web-1")) << table.stdout_text;
  EXPECT_TRUE(absl::StrContains(table.stdout_text, "connected")) << table.stdout_text;
  EXPECT_FALSE(absl::StrContains(controller_->Output(), "plain text")) << controller_->Output();
  EXPECT_FALSE(absl::StrContains(agents_.back()->Output(), "no TLS")) << agents_.back()->Output();
}

TEST_F(TlsTest, AnAnswerOfManyTlsRecordsArrivesWhole) {
  // An answer of about 60 KB (400 users made straight in the database) crosses mutual TLS in
  // several records (16 KiB at most each), whole and in order.
  ASSERT_FALSE(token_.empty()) << "no admin token";
  CommandResult made = RunCommand(
      {"sqlite3", dir_.File("data/vigil.db"),
       "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400) "
       "INSERT INTO users(name, role, token_hash, created_unix_ms) "
       "SELECT printf('reader-%04d-whose-name-is-long-enough-to-fill-records', i), 'viewer', "
       "printf('%064d', i), 1700000000000 FROM n;"});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  StartController();
  CommandResult listed = Cli({"users", "list", "-o", "json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_GT(listed.stdout_text.size(), 40'000u);
  v1::ListUsersResponse response;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(listed.stdout_text, &response).ok())
      << listed.stdout_text.substr(0, 500);
  std::vector<std::string> readers;
  for (const v1::UserInfo& user : response.users()) {
    if (absl::StartsWith(user.name(), "reader-")) {
      readers.push_back(user.name());
    }
  }
  ASSERT_EQ(readers.size(), 400u);
  EXPECT_EQ(readers.front(), "reader-0001-whose-name-is-long-enough-to-fill-records");
  EXPECT_EQ(readers.back(), "reader-0400-whose-name-is-long-enough-to-fill-records");
}

TEST_F(TlsTest, AgentWhoseCertificateNamesAnotherHostIsRefusedOnBothSides) {
  StartController();
  Subprocess& impostor = StartAgent("web-1", "web-2");
  const std::string mismatch = "names 'web-2', but the agent says it is 'web-1'";
  ASSERT_TRUE(
      WaitUntil([&] { return absl::StrContains(impostor.Output(), mismatch); }, absl::Seconds(10)))
      << impostor.Output();
  EXPECT_TRUE(absl::StrContains(impostor.Output(), "refused agent 'web-1'")) << impostor.Output();
  EXPECT_TRUE(WaitUntil([&] { return absl::StrContains(controller_->Output(), mismatch); },
                        absl::Seconds(5)))
      << controller_->Output();
  EXPECT_TRUE(absl::StrContains(controller_->Output(), "certificate of peer "))
      << controller_->Output();

  // It keeps retrying with backoff and is never let in; the controller says why once.
  absl::SleepFor(absl::Seconds(3));
  EXPECT_TRUE(impostor.Running());
  EXPECT_EQ(Agents().count("web-1"), 0u) << Cli({"agents"}).output;
  EXPECT_EQ(CountLines(controller_->Output(), mismatch), 1) << controller_->Output();

  // The refusal does not hold the id against the agent that owns the certificate.
  impostor.Stop();
  StartAgent("web-1", "web-1");
  EXPECT_TRUE(WaitUntil([&] { return Connected("web-1"); }, absl::Seconds(15)))
      << agents_.back()->Output() << controller_->Output();
}

TEST_F(TlsTest, PodAgentWithItsWorkloadCertificateConnects) {
  StartController();
  // A Deployment's pod name: workload, template hash, random part.
  StartAgentWithFiles("web-7d9f8c6b5-x2k4p", "pod-web");
  ASSERT_TRUE(WaitUntil([&] { return Connected("web-7d9f8c6b5-x2k4p"); }, absl::Seconds(15)))
      << agents_.back()->Output() << controller_->Output();
  EXPECT_FALSE(absl::StrContains(controller_->Output(), "certificate of peer "))
      << controller_->Output();
}

TEST_F(TlsTest, PodCertificateRefusesIdsOutsideItsWorkload) {
  StartController();
  // Another workload's pod, and the bare workload name: neither is web-SUFFIX.
  Subprocess& other = StartAgentWithFiles("other-7d9f8c6b5-x2k4p", "pod-web");
  Subprocess& bare = StartAgentWithFiles("web", "pod-web");
  for (const auto& [agent, id] :
       {std::pair<Subprocess*, std::string>{&other, "other-7d9f8c6b5-x2k4p"}, {&bare, "web"}}) {
    const std::string mismatch =
        absl::StrCat("names 'web.pods.vigil', but the agent says it is '", id, "'");
    EXPECT_TRUE(
        WaitUntil([&] { return absl::StrContains(agent->Output(), mismatch); }, absl::Seconds(10)))
        << agent->Output();
    EXPECT_TRUE(WaitUntil([&] { return absl::StrContains(controller_->Output(), mismatch); },
                          absl::Seconds(5)))
        << controller_->Output();
  }
  EXPECT_TRUE(absl::StrContains(other.Output(), "NAME.pods.vigil admits only the pod names"))
      << other.Output();
  auto agents = Agents();
  EXPECT_EQ(agents.count("other-7d9f8c6b5-x2k4p"), 0u) << Cli({"agents"}).output;
  EXPECT_EQ(agents.count("web"), 0u) << Cli({"agents"}).output;
}

TEST_F(TlsTest, CliWithoutAClientCertificateIsRefused) {
  StartController();
  CommandResult anonymous = RunCommand({BinaryPath("vigil"), "--controller=" + address_,
                                        "--tls-ca=" + Tls("ca.pem"), "--timeout=5s", "agents"},
                                       absl::Seconds(15), CliEnvironment());
  EXPECT_EQ(anonymous.exit_code, 1) << anonymous.output;
  EXPECT_TRUE(absl::StartsWith(anonymous.output, "vigil: cannot reach controller at " + address_))
      << anonymous.output;
  EXPECT_TRUE(absl::StrContains(anonymous.output, "--tls-cert")) << anonymous.output;
  EXPECT_EQ(std::count(anonymous.output.begin(), anonymous.output.end(), '\n'), 1)
      << anonymous.output;  // gRPC's own handshake errors are not printed
  EXPECT_EQ(anonymous.stdout_text, "");
  EXPECT_TRUE(WaitUntil(
      [&] { return absl::StrContains(controller_->Output(), "peer did not return a certificate"); },
      absl::Seconds(5)))
      << controller_->Output();

  // Plain text to a TLS controller gets nowhere either.
  CommandResult plain = RunCommand(
      {BinaryPath("vigil"), "--controller=" + address_, "--insecure", "--timeout=5s", "agents"},
      absl::Seconds(15), CliEnvironment());
  EXPECT_EQ(plain.exit_code, 1) << plain.output;
  EXPECT_TRUE(absl::StrContains(plain.output, "may require TLS")) << plain.output;
  EXPECT_EQ(plain.stdout_text, "");
}

TEST_F(TlsTest, ControllerRefusesPlainTextOffLoopbackAndWithoutFlags) {
  const std::string port = absl::StrCat(testing::FreeLoopbackPort());
  CommandResult open =
      RunCommand({BinaryPath("vigil-controller"), "--listen=0.0.0.0:" + port, "--insecure",
                  "--http-listen=off", "--db=" + dir_.File("open/vigil.db")},
                 absl::Seconds(10));
  EXPECT_TRUE(open.exit_code == 1 || open.exit_code == 2) << open.exit_code << open.output;
  EXPECT_TRUE(absl::StrContains(open.output, "--insecure is refused for 0.0.0.0:" + port))
      << open.output;
  EXPECT_TRUE(absl::StrContains(open.output, "loopback")) << open.output;

  CommandResult bare = RunCommand({BinaryPath("vigil-controller"), "--listen=" + address_,
                                   "--http-listen=off", "--db=" + dir_.File("bare/vigil.db")},
                                  absl::Seconds(10));
  EXPECT_TRUE(bare.exit_code == 1 || bare.exit_code == 2) << bare.exit_code << bare.output;
  EXPECT_TRUE(absl::StrContains(bare.output, "--tls-ca")) << bare.output;
  EXPECT_TRUE(absl::StrContains(bare.output, "scripts/dev-ca.sh")) << bare.output;
}

TEST_F(TlsTest, CliRefusesToRunWithoutTlsOrInsecure) {
  CommandResult bare = RunCommand({BinaryPath("vigil"), "--controller=" + address_, "agents"},
                                  absl::Seconds(15), kNoTransportEnvironment);
  EXPECT_EQ(bare.exit_code, 2) << bare.output;
  EXPECT_EQ(std::count(bare.output.begin(), bare.output.end(), '\n'), 1) << bare.output;
  EXPECT_TRUE(absl::StrContains(bare.output, "--tls-ca")) << bare.output;
  EXPECT_TRUE(absl::StrContains(bare.output, "VIGIL_TLS_CA")) << bare.output;
  EXPECT_TRUE(absl::StrContains(bare.output, "--insecure")) << bare.output;

  // The environment is enough: the files of scripts/run.sh's instructions.
  StartController();
  CommandResult from_env =
      RunCommand({BinaryPath("vigil"), "--controller=" + address_, "agents"}, absl::Seconds(15),
                 CliEnvironment({{"VIGIL_TLS_CA", Tls("ca.pem")},
                                 {"VIGIL_TLS_CERT", Tls("user-admin.pem")},
                                 {"VIGIL_TLS_KEY", Tls("user-admin.key")},
                                 {"VIGIL_INSECURE", ""}}));
  EXPECT_EQ(from_env.exit_code, 0) << from_env.output;
}

}  // namespace
}  // namespace vigil
