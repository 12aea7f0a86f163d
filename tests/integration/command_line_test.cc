// The built binaries' command lines where a process, not a function, is the unit: --version on
// all three, plain text refused for names that only look like loopback, and a token that gRPC
// could not send ending as bad usage rather than an abort.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/support/process.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;

// A developer's exported VIGIL_* settings must not change what the binaries are given here.
const std::map<std::string, std::string> kCleanEnvironment = {
    {"VIGIL_TLS_CA", ""},   {"VIGIL_TLS_CERT", ""},   {"VIGIL_TLS_KEY", ""},
    {"VIGIL_INSECURE", ""}, {"VIGIL_CONTROLLER", ""}, {"VIGIL_TOKEN", ""}};

TEST(CommandLineTest, EveryBinaryPrintsItsNameAndVersion) {
  for (const char* name : {"vigil-controller", "vigil-agent", "vigil"}) {
    CommandResult result =
        RunCommand({BinaryPath(name), "--version"}, absl::Seconds(10), kCleanEnvironment);
    EXPECT_EQ(result.exit_code, 0) << name << ": " << result.output;
    EXPECT_EQ(result.stdout_text, absl::StrCat(name, " ", VIGIL_VERSION, "\n")) << name;
    EXPECT_EQ(result.output, result.stdout_text) << name << ": nothing on stderr";
  }
}

TEST(CommandLineTest, PlainTextIsRefusedForNamesThatOnlyLookLikeLoopback) {
  testing::TempDir dir;
  for (const std::string host : {"127.attacker.example", "127.0.0.1.nip.io", "localhost.evil"}) {
    const std::string address = host + ":7443";
    const std::string refusal = "--insecure is refused for " + address;

    CommandResult controller =
        RunCommand({BinaryPath("vigil-controller"), "--listen=" + address, "--insecure",
                    "--http-listen=off", "--db=" + dir.File(host + "/vigil.db")},
                   absl::Seconds(10), kCleanEnvironment);
    EXPECT_TRUE(controller.exit_code == 1 || controller.exit_code == 2)
        << controller.exit_code << controller.output;
    EXPECT_TRUE(absl::StrContains(controller.output, refusal)) << controller.output;

    CommandResult agent =
        RunCommand({BinaryPath("vigil-agent"), "--controller=" + address, "--insecure"},
                   absl::Seconds(10), kCleanEnvironment);
    EXPECT_EQ(agent.exit_code, 2) << agent.output;
    EXPECT_TRUE(absl::StrContains(agent.output, refusal)) << agent.output;

    CommandResult cli =
        RunCommand({BinaryPath("vigil"), "--controller=" + address, "--insecure", "agents"},
                   absl::Seconds(10), kCleanEnvironment);
    EXPECT_EQ(cli.exit_code, 2) << cli.output;
    EXPECT_EQ(cli.output, "vigil: " + refusal + ": plain text is allowed on loopback only\n");
  }
}

TEST(CommandLineTest, TokenWithCrLfIsBadUsageNotAnAbort) {
  // Nothing listens there: the token must be refused before any call is tried.
  const std::string controller = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
  CommandResult flag = RunCommand({BinaryPath("vigil"), "--controller=" + controller, "--insecure",
                                   "--token=abc\r\n", "agents"},
                                  absl::Seconds(10), kCleanEnvironment);
  EXPECT_EQ(flag.exit_code, 2) << flag.output;
  EXPECT_EQ(flag.output,
            "vigil: --token holds a control character (\\r at byte 4): a token is one line of "
            "printable ASCII\n");

  std::map<std::string, std::string> env = kCleanEnvironment;
  env["VIGIL_TOKEN"] = "abc\ninjected: 1";
  CommandResult variable =
      RunCommand({BinaryPath("vigil"), "--controller=" + controller, "--insecure", "agents"},
                 absl::Seconds(10), env);
  EXPECT_EQ(variable.exit_code, 2) << variable.output;
  EXPECT_TRUE(absl::StartsWith(variable.output, "vigil: VIGIL_TOKEN holds a control character"))
      << variable.output;
}

}  // namespace
}  // namespace vigil
