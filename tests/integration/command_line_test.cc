// The built binaries' command lines where a process, not a function, is the unit: --version on
// all three, plain text refused for names that only look like loopback, and a token that gRPC
// could not send ending as bad usage rather than an abort; `vigil watch --after 0` over a timeline
// longer than one backfill page; `vigil incident show` over a timeline longer than one page.
#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/incidents_cmd.h"
#include "cli/output.h"
#include "controller/incidents/incident_report.h"
#include "controller/remediation/suggestions.h"
#include "storage/sqlite/sqlite_store.h"
#include "tests/support/process.h"
#include "tests/support/proto_json.h"
#include "tests/support/servers.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;

const std::map<std::string, std::string>& kCleanEnvironment = testing::CleanVigilEnvironment();

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

TEST(CommandLineTest, WatchAfterZeroPrintsEveryStoredEventBeyondTenThousand) {
  testing::TempDir dir;
  const std::string db = dir.File("vigil.db");
  constexpr uint64_t kStored = 12'500;  // the old backfill stopped at 10,000
  {
    absl::StatusOr<std::unique_ptr<storage::Store>> store = storage::OpenSqliteStore(db);
    ASSERT_TRUE(store.ok()) << store.status();
    for (uint64_t i = 1; i <= kStored; ++i) {
      v1::TimelineEvent event;
      event.set_incident_id(i % 2 == 0 ? "INC-0001" : "INC-0002");
      event.set_kind("note");
      event.set_actor("tester");
      event.set_summary(absl::StrCat("note ", i));
      absl::StatusOr<v1::TimelineEvent> stored = (*store)->AppendEvent(event);
      ASSERT_TRUE(stored.ok()) << stored.status();
    }
  }
  const std::string token = testing::AddVigilUser(db, "watcher", "viewer");
  const std::string address = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
  const uint16_t http_port = testing::FreeLoopbackPort();
  testing::Subprocess controller(
      {BinaryPath("vigil-controller"), "--listen=" + address, "--db=" + db, "--insecure",
       absl::StrCat("--http-listen=127.0.0.1:", http_port)},
      kCleanEnvironment, dir.File("controller.log"));
  const std::vector<std::string> cli = {BinaryPath("vigil"), "--controller=" + address,
                                        "--insecure", "--token=" + token};
  auto with = [&cli](std::vector<std::string> args) {
    args.insert(args.begin(), cli.begin(), cli.end());
    return args;
  };
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return RunCommand(with({"agents"}), absl::Seconds(5), kCleanEnvironment).exit_code == 0; },
      absl::Seconds(15)))
      << controller.Output();

  testing::Subprocess watch(with({"-o", "json", "watch", "--after", "0"}), kCleanEnvironment,
                            dir.File("watch.log"));
  // stdout and stderr share the log: events are the JSON lines, notes start with "vigil:".
  auto events = [&watch] {
    std::vector<v1::TimelineEvent> out;
    for (absl::string_view line : absl::StrSplit(watch.Output(), '\n')) {
      v1::TimelineEvent event;
      if (absl::StartsWith(line, "{") && testing::ParseJson(std::string(line), &event)) {
        out.push_back(event);
      }
    }
    return out;
  };
  ASSERT_TRUE(testing::WaitUntil([&] { return events().size() >= kStored; }, absl::Seconds(60)))
      << events().size() << " events; " << watch.Output().substr(0, 2000);

  std::string metrics;
  ASSERT_EQ(testing::HttpGet(http_port, "/metrics", absl::Seconds(10), &metrics), 200);
  EXPECT_TRUE(absl::StrContains(metrics, "vigil_watch_streams_open 1\n")) << metrics;
  EXPECT_TRUE(absl::StrContains(metrics, "vigil_watch_streams_behind_total 0\n")) << metrics;

  std::vector<v1::TimelineEvent> got = events();
  ASSERT_EQ(got.size(), kStored) << "each stored event once";
  for (uint64_t i = 0; i < kStored; ++i) {
    ASSERT_EQ(got[i].seq(), i + 1);
    ASSERT_EQ(got[i].summary(), absl::StrCat("note ", i + 1));
  }
  EXPECT_FALSE(absl::StrContains(watch.Output(), "vigil:")) << watch.Output().substr(0, 2000);
  EXPECT_TRUE(watch.Running());
}

TEST(CommandLineTest, IncidentShowPrintsAnIncidentLongerThanOnePageWhole) {
  testing::TempDir dir;
  const std::string db = dir.File("vigil.db");
  constexpr int kEvents = 12'345;  // the CLI's pages hold 5,000: three of them
  const int64_t opened_ms = absl::ToUnixMillis(absl::Now() - absl::Hours(72));
  v1::GetIncidentResponse expected;  // as the unpaged GetIncident used to answer
  {
    absl::StatusOr<std::unique_ptr<storage::Store>> store = storage::OpenSqliteStore(db);
    ASSERT_TRUE(store.ok()) << store.status();
    v1::Incident incident;
    incident.set_id("INC-0001");
    incident.set_title("API p95 latency above 2 s");
    incident.set_state(v1::ACKNOWLEDGED);
    incident.set_severity(v1::SEV2);
    incident.set_opened_unix_ms(opened_ms);
    incident.add_agents("web-1");
    storage::WriteBatch batch;
    batch.Save(incident);
    v1::Alert alert;
    alert.set_id("al-1");
    alert.set_rule("HighAPILatency");
    alert.set_incident_id("INC-0001");
    alert.set_agent_id("web-1");
    alert.set_fired_unix_ms(opened_ms);
    batch.Save(alert);
    for (int i = 1; i <= kEvents; ++i) {
      v1::TimelineEvent event;
      event.set_incident_id(i % 7 == 0 ? "INC-0002" : "INC-0001");  // seqs with gaps
      event.set_time_unix_ms(opened_ms + i);
      event.set_kind("note");
      event.set_actor("tester");
      event.set_summary(absl::StrCat("note ", i));
      batch.Append(event);
    }
    ASSERT_TRUE((*store)->Commit(batch).ok());
    absl::StatusOr<v1::GetIncidentResponse> whole = controller::LoadIncident(**store, "INC-0001");
    ASSERT_TRUE(whole.ok()) << whole.status();
    expected = *whole;
    // With the built-in rules' suggested fixes, as the first page carries them (web-1 never
    // connected: its suggestion waits for diagnostics).
    absl::StatusOr<std::vector<v1::SuggestedAction>> suggestions = controller::LoadSuggestions(
        **store, "INC-0001", controller::SuggestionsOf(controller::DefaultRules()),
        [](const std::string&, const std::string&) { return false; });
    ASSERT_TRUE(suggestions.ok()) << suggestions.status();
    ASSERT_EQ(suggestions->size(), 1u);
    EXPECT_EQ((*suggestions)[0].missing(), "no top_processes_cpu table from web-1 yet");
    for (const v1::SuggestedAction& s : *suggestions) {
      *expected.add_suggestions() = s;
    }
  }
  ASSERT_GT(expected.timeline_size(), 10'000);
  std::ostringstream table;
  cli::PrintIncidentDetail(expected, absl::Now(), table);

  const std::string token = testing::AddVigilUser(db, "reader", "viewer");
  const std::string address = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
  testing::Subprocess controller({BinaryPath("vigil-controller"), "--listen=" + address,
                                  "--db=" + db, "--insecure", "--http-listen=off"},
                                 kCleanEnvironment, dir.File("controller.log"));
  const std::vector<std::string> cli = {BinaryPath("vigil"), "--controller=" + address,
                                        "--insecure", "--token=" + token};
  auto with = [&cli](std::vector<std::string> args) {
    args.insert(args.begin(), cli.begin(), cli.end());
    return args;
  };
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return RunCommand(with({"agents"}), absl::Seconds(5), kCleanEnvironment).exit_code == 0; },
      absl::Seconds(15)))
      << controller.Output();

  CommandResult shown =
      RunCommand(with({"incident", "show", "INC-0001"}), absl::Seconds(30), kCleanEnvironment);
  ASSERT_EQ(shown.exit_code, 0) << shown.output.substr(0, 2000);
  EXPECT_EQ(shown.stdout_text, table.str());
  EXPECT_EQ(shown.output, shown.stdout_text) << "nothing on stderr";

  CommandResult json = RunCommand(with({"-o", "json", "incident", "show", "INC-0001"}),
                                  absl::Seconds(30), kCleanEnvironment);
  ASSERT_EQ(json.exit_code, 0) << json.output.substr(0, 2000);
  EXPECT_EQ(json.stdout_text, cli::ToJson(expected, /*pretty=*/true));
  EXPECT_FALSE(absl::StrContains(json.stdout_text, "next_after_seq"));
}

}  // namespace
}  // namespace vigil
