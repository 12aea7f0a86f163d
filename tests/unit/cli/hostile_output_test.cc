// Text from the controller (host names, labels, alert fields, actors, event texts, error
// messages) is what an agent or a webhook caller chose: fed escape sequences, line breaks, C1
// controls and bidirectional overrides, every table and line of the CLI must still print only
// visible text, one line per record, while -o json keeps the exact values.
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <sstream>
#include <streambuf>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "common/clock.h"
#include "tests/unit/cli/fake_controller.h"

namespace vigil::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr int64_t kNowMs = 1'700'000'000'000;

// Clears the screen, retitles the window, returns the carriage and forges a `watch` line, then
// recolours through DEL, an 8-bit CSI (U+009B) and a right-to-left override. Valid UTF-8, as
// protobuf strings must be.
const std::string kHostile =
    "web\x1b[2J\x1b]0;pwned\x07\r\n2023-11-14 22:12:27Z  #99  inc-1  note  root  forged\tx\x7f"
    "\xc2\x9b"
    "31m\xe2\x80\xae";
// How it must appear.
const std::string kShown =
    "web\\x1b[2J\\x1b]0;pwned\\x07\\r\\n2023-11-14 22:12:27Z  #99  inc-1  note  root  "
    "forged\\tx\\x7f\\u009b31m\\u202e";

// Success when `text` holds nothing a terminal acts on: printable ASCII and the CLI's own line
// ends only (the hostile inputs carry no other non-ASCII text); tabs too when `tabs`.
::testing::AssertionResult OnlyVisible(const std::string& text, bool tabs = false) {
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c != '\n' && !(tabs && c == '\t') && (c < 0x20 || c > 0x7E)) {
      return ::testing::AssertionFailure()
             << "raw byte " << static_cast<int>(c) << " at offset " << i << " of:\n"
             << text;
    }
  }
  return ::testing::AssertionSuccess();
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

int CountOf(const std::string& text, const std::string& needle) {
  int count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

TEST(EscapeForTerminalTest, ShowsControlsAsVisibleEscapes) {
  EXPECT_EQ(EscapeForTerminal(kHostile), kShown);
  EXPECT_EQ(EscapeForTerminal(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(EscapeForTerminal("\x01\x1f\x7f"), "\\x01\\x1f\\x7f");
  // Every C1 control, and nothing on either side of the range.
  EXPECT_EQ(EscapeForTerminal("\xc2\x80\xc2\x85\xc2\x9f"), "\\u0080\\u0085\\u009f");
  EXPECT_EQ(EscapeForTerminal("\xc2\xa0\xc2\xbf"), "\xc2\xa0\xc2\xbf");
  // Bidirectional controls and the Unicode line separators.
  EXPECT_EQ(EscapeForTerminal("\xe2\x80\xaa\xe2\x81\xa6\xe2\x81\xa9\xe2\x80\xa8\xe2\x80\xa9"),
            "\\u202a\\u2066\\u2069\\u2028\\u2029");
}

TEST(EscapeForTerminalTest, BytesThatAreNotUtf8AreShownOneByOne) {
  EXPECT_EQ(EscapeForTerminal("\xff"), "\\xff");
  EXPECT_EQ(EscapeForTerminal("\x9b"
                              "2J"),
            "\\x9b2J");                                                      // a lone 8-bit CSI
  EXPECT_EQ(EscapeForTerminal("\xc0\xaf"), "\\xc0\\xaf");                    // overlong "/"
  EXPECT_EQ(EscapeForTerminal("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // a surrogate
  EXPECT_EQ(EscapeForTerminal("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  EXPECT_EQ(EscapeForTerminal("ok\xe2\x82"), "ok\\xe2\\x82");                // cut short
  EXPECT_EQ(EscapeForTerminal("\xe2\x1b"), "\\xe2\\x1b");  // a lead byte before ESC
}

TEST(EscapeForTerminalTest, ReadableTextPassesAndEscapingTwiceChangesNothing) {
  const std::string text =
      "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x94\xa5 a\\nb {x=~\"\\d+\"}";
  EXPECT_EQ(EscapeForTerminal(text), text);
  EXPECT_EQ(EscapeForTerminal(EscapeForTerminal(kHostile)), EscapeForTerminal(kHostile));
  EXPECT_EQ(OneLine("  \t" + kHostile + " \n"), kShown);
}

TEST(EscapeForTerminalTest, DocumentsKeepTheirLinesButNotTheirEscapes) {
  EXPECT_EQ(EscapeForTerminal("# Report\n\n\tline\r\x1b[2Jend\n", /*keep_newlines=*/true),
            "# Report\n\n\tline\\r\\x1b[2Jend\n");
}

TEST(TableTest, CellsAndHeadersAreEscapedAndAligned) {
  Table table({"A", "H\x1b[1mEAD"});
  table.AddRow({"x\ny", "\xff"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "A      H\\x1b[1mEAD\n"
            "x\\ny   \\xff\n");
}

// A stream buffer that may be written by one thread while another reads it.
class SyncBuf : public std::streambuf {
 public:
  std::string str() const {
    absl::MutexLock lock(&mu_);
    return data_;
  }

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    absl::MutexLock lock(&mu_);
    data_.append(s, static_cast<size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) {
      absl::MutexLock lock(&mu_);
      data_.push_back(static_cast<char>(c));
    }
    return c;
  }

 private:
  mutable absl::Mutex mu_;
  std::string data_;
};

class HostileOutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("VIGIL_TOKEN");
    ASSERT_TRUE(controller_.ok());
  }

  int Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--controller=" + controller_.address(), "--insecure"});
    out_.str("");
    err_.str("");
    CliContext context;
    context.clock = &clock_;
    return RunCli(args, out_, err_, context);
  }
  testing::FakeControlService& fake() { return controller_.service(); }

  SimulatedClock clock_{absl::FromUnixMillis(kNowMs)};
  testing::FakeController controller_;
  std::ostringstream out_;
  std::ostringstream err_;
};

v1::ListAgentsResponse Agents(const std::string& text) {
  v1::ListAgentsResponse response;
  v1::AgentInfo* agent = response.add_agents();
  agent->set_agent_id("id-" + text);
  agent->set_hostname(text);
  (*agent->mutable_labels())["role"] = text;
  agent->set_state(v1::CONNECTED);
  agent->set_last_seen_unix_ms(kNowMs - 2'000);
  return response;
}

TEST_F(HostileOutputTest, AgentsTableKeepsOneLinePerAgent) {
  fake().SetResponse("ListAgents", Agents(kHostile));
  ASSERT_EQ(Run({"agents"}), 0) << err_.str();
  EXPECT_TRUE(OnlyVisible(out_.str()));
  std::vector<std::string> lines = Lines(out_.str());
  ASSERT_EQ(lines.size(), 2u) << out_.str();
  EXPECT_THAT(lines[1], StartsWith("id-" + kShown + "   " + kShown + "   " + kShown + "   "));
}

TEST_F(HostileOutputTest, JsonKeepsTheExactValues) {
  fake().SetResponse("ListAgents", Agents(kHostile));
  ASSERT_EQ(Run({"-o", "json", "agents"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), Not(HasSubstr("\x1b")));
  EXPECT_THAT(out_.str(), HasSubstr("\\u001b[2J"));
  v1::ListAgentsResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out_.str(), &parsed).ok());
  ASSERT_EQ(parsed.agents_size(), 1);
  EXPECT_EQ(parsed.agents(0).hostname(), kHostile);
}

TEST_F(HostileOutputTest, MetricsAndDiagnosticsAreEscaped) {
  v1::GetMetricsResponse response;
  v1::MetricValue* metric = response.add_metrics();
  metric->set_name(kHostile);
  (*metric->mutable_labels())[kHostile] = kHostile;
  metric->set_value(1);
  v1::DiagnosticTable* table = response.add_diagnostics();
  table->set_name(kHostile);
  table->add_columns(kHostile);
  table->add_rows()->add_cells(kHostile);
  v1::DiagnosticTable* failed = response.add_diagnostics();
  failed->set_name("pg");
  failed->set_error(kHostile);
  fake().SetResponse("GetMetrics", response);
  ASSERT_EQ(Run({"metrics", "web-1"}), 0) << err_.str();
  EXPECT_TRUE(OnlyVisible(out_.str()));
  // The metrics table (2), the diagnostic's title, header and row (3), the failed one's (2).
  EXPECT_EQ(Lines(out_.str()).size(), 7u) << out_.str();
  EXPECT_EQ(CountOf(out_.str(), kShown), 7);
}

v1::Alert Alert(const std::string& text) {
  v1::Alert alert;
  alert.set_id("al-" + text);
  alert.set_rule(text);
  alert.set_severity(v1::SEV2);
  alert.set_state(v1::FIRING);
  alert.set_agent_id(text);
  alert.set_incident_id(text);
  alert.set_summary(text);
  return alert;
}

TEST_F(HostileOutputTest, AlertsTableKeepsOneLinePerAlert) {
  v1::ListAlertsResponse response;
  *response.add_alerts() = Alert(kHostile);
  *response.add_alerts() = Alert("plain");
  fake().SetResponse("ListAlerts", response);
  ASSERT_EQ(Run({"alerts"}), 0) << err_.str();
  EXPECT_TRUE(OnlyVisible(out_.str()));
  std::vector<std::string> lines = Lines(out_.str());
  ASSERT_EQ(lines.size(), 3u) << out_.str();
  EXPECT_EQ(CountOf(lines[1], kShown), 5);
  EXPECT_THAT(lines[2], StartsWith("al-plain "));
}

v1::ActionProposal Proposal(const std::string& text) {
  v1::ActionProposal proposal;
  proposal.set_id("act-" + text);
  proposal.set_incident_id(text);
  proposal.set_action(text);
  (*proposal.mutable_params())[text] = text;
  proposal.add_agents(text);
  proposal.add_agents(text);
  proposal.set_proposed_by(text);
  proposal.add_approved_by(text);
  proposal.set_rejected_by(text);
  proposal.set_reason(text);
  proposal.set_state(v1::APPROVED);
  proposal.set_proposed_unix_ms(kNowMs - 30'000);
  v1::ActionRun* run = proposal.add_runs();
  run->set_agent_id(text);
  run->set_state(text);
  run->set_reason(text);
  run->set_output_tail("first\n" + text);
  return proposal;
}

v1::GetIncidentResponse IncidentResponse(const std::string& text) {
  v1::GetIncidentResponse response;
  v1::Incident* incident = response.mutable_incident();
  incident->set_id("inc-" + text);
  incident->set_title(text);
  incident->set_severity(v1::SEV2);
  incident->set_state(v1::ACKNOWLEDGED);
  incident->set_opened_unix_ms(kNowMs - 300'000);
  incident->set_acknowledged_unix_ms(kNowMs - 120'000);
  incident->set_acknowledged_by(text);
  for (int i = 0; i < 5; ++i) incident->add_agents(text);
  incident->add_services(text);
  incident->add_alert_rules(text);
  incident->set_probable_cause(text);
  incident->set_probable_cause_reason(text);
  v1::ChecklistItem* done = incident->add_checklist();
  done->set_name(text);
  done->set_done(true);
  done->set_done_by(text);
  done->set_done_unix_ms(kNowMs - 60'000);
  incident->add_checklist()->set_name(text);
  *response.add_alerts() = Alert(text);
  *response.add_actions() = Proposal(text);
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    v1::TimelineEvent* event = response.add_timeline();
    event->set_seq(seq);
    event->set_time_unix_ms(kNowMs - 60'000);
    event->set_kind(text);
    event->set_actor(text);
    event->set_summary(text);
  }
  return response;
}

TEST_F(HostileOutputTest, IncidentShowPrintsAsManyLinesAsForPlainText) {
  fake().SetResponse("GetIncident", IncidentResponse("plain"));
  ASSERT_EQ(Run({"incident", "show", "inc-1"}), 0) << err_.str();
  const size_t plain_lines = Lines(out_.str()).size();

  fake().SetResponse("GetIncident", IncidentResponse(kHostile));
  ASSERT_EQ(Run({"incident", "show", "inc-1"}), 0) << err_.str();
  const std::string text = out_.str();
  EXPECT_TRUE(OnlyVisible(text));
  EXPECT_EQ(Lines(text).size(), plain_lines) << text;
  EXPECT_THAT(text, StartsWith("Incident inc-" + kShown + ": " + kShown + "\n"));
  EXPECT_THAT(text, HasSubstr("  [x] " + kShown + "  (" + kShown + ", "));
  EXPECT_THAT(text, HasSubstr("  [ ] " + kShown + "\n"));
  EXPECT_THAT(text, HasSubstr("  Probable cause:   " + kShown + " (" + kShown + ")\n"));
}

TEST_F(HostileOutputTest, IncidentsTableKeepsOneLinePerIncident) {
  v1::ListIncidentsResponse response;
  *response.add_incidents() = IncidentResponse(kHostile).incident();
  fake().SetResponse("ListIncidents", response);
  ASSERT_EQ(Run({"incidents"}), 0) << err_.str();
  EXPECT_TRUE(OnlyVisible(out_.str()));
  std::vector<std::string> lines = Lines(out_.str());
  ASSERT_EQ(lines.size(), 2u) << out_.str();
  EXPECT_THAT(lines[1], StartsWith("inc-" + kShown + "   SEV2   acknowledged   " + kShown));
}

TEST_F(HostileOutputTest, ActionsTableAndDetailAreEscaped) {
  v1::ListActionsResponse response;
  *response.add_actions() = Proposal(kHostile);
  fake().SetResponse("ListActions", response);
  ASSERT_EQ(Run({"actions"}), 0) << err_.str();
  EXPECT_TRUE(OnlyVisible(out_.str()));
  EXPECT_EQ(Lines(out_.str()).size(), 2u) << out_.str();

  fake().SetResponse("ReviewAction", Proposal("plain"));
  ASSERT_EQ(Run({"action", "approve", "act-1"}), 0) << err_.str();
  const size_t plain_lines = Lines(out_.str()).size();
  fake().SetResponse("ReviewAction", Proposal(kHostile));
  ASSERT_EQ(Run({"action", "approve", "act-1"}), 0) << err_.str();
  EXPECT_TRUE(OnlyVisible(out_.str()));
  EXPECT_EQ(Lines(out_.str()).size(), plain_lines) << out_.str();
  EXPECT_THAT(out_.str(),
              StartsWith("Action act-" + kShown + ": " + kShown + " on " + kShown + ", " + kShown));
}

TEST_F(HostileOutputTest, UpdatesWhoAmIAndAuditAreEscaped) {
  v1::Incident incident = IncidentResponse(kHostile).incident();
  fake().SetResponse("UpdateIncident", incident);
  ASSERT_EQ(Run({"incident", "ack", "inc-1"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "incident inc-" + kShown + " acknowledged: now acknowledged, SEV2\n");

  v1::WhoAmIResponse who;
  who.set_user(kHostile);
  who.set_role(kHostile);
  fake().SetResponse("WhoAmI", who);
  ASSERT_EQ(Run({"whoami"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), kShown + " (" + kShown + ") at " + controller_.address() + "\n");

  v1::VerifyAuditResponse broken;
  broken.set_first_bad_seq(3);
  broken.set_problem(kHostile);
  fake().SetResponse("VerifyAudit", broken);
  EXPECT_EQ(Run({"audit", "verify"}), 1);
  EXPECT_EQ(out_.str(), "audit chain BROKEN at seq 3: " + kShown + "\n");

  v1::ExportIncidentResponse report;
  report.set_content("# Incident\n\nhost: " + kHostile + "\n");
  fake().SetResponse("ExportIncident", report);
  ASSERT_EQ(Run({"audit", "export", "inc-1"}), 0) << err_.str();
  EXPECT_TRUE(OnlyVisible(out_.str(), /*tabs=*/true));
  // The report's own lines stay; the hostile field's line break stays too (it is a document),
  // but nothing in it can drive the terminal.
  EXPECT_THAT(out_.str(), StartsWith("# Incident\n\nhost: web\\x1b[2J\\x1b]0;pwned\\x07\\r\n"));
}

TEST_F(HostileOutputTest, ErrorsFromTheControllerStayOnOneLine) {
  const std::string message = kHostile + "\xff\xfe";  // a status message is not UTF-8-checked
  for (grpc::StatusCode code : {grpc::StatusCode::NOT_FOUND, grpc::StatusCode::PERMISSION_DENIED,
                                grpc::StatusCode::UNAUTHENTICATED, grpc::StatusCode::INTERNAL,
                                grpc::StatusCode::UNAVAILABLE}) {
    fake().SetError("ListAgents", grpc::Status(code, message));
    EXPECT_EQ(Run({"agents"}), 1);
    EXPECT_TRUE(OnlyVisible(err_.str())) << "code " << code;
    EXPECT_EQ(Lines(err_.str()).size(), 1u) << err_.str();
    EXPECT_THAT(err_.str(), StartsWith("vigil: "));
  }
  fake().SetError("ListAgents", grpc::Status(grpc::StatusCode::NOT_FOUND, message));
  EXPECT_EQ(Run({"agents"}), 1);
  EXPECT_EQ(err_.str(), "vigil: " + kShown + "\\xff\\xfe\n");
}

// Runs `vigil watch` on a thread until stopped, as Ctrl-C would.
class WatchRun {
 public:
  explicit WatchRun(std::vector<std::string> args)
      : out_(&out_buf_), err_(&err_buf_), thread_([this, args] {
          CliContext context;
          context.interrupt = &interrupt_;
          status_ = RunCli(args, out_, err_, context);
        }) {}
  ~WatchRun() { Stop(); }
  int Stop() {
    interrupt_.Trigger();
    if (thread_.joinable()) thread_.join();
    return status_;
  }
  std::string out() const { return out_buf_.str(); }
  std::string err() const { return err_buf_.str(); }

 private:
  SyncBuf out_buf_;
  SyncBuf err_buf_;
  std::ostream out_;
  std::ostream err_;
  Interrupt interrupt_;
  int status_ = -1;
  std::thread thread_;
};

TEST(HostileWatchTest, AnEventCannotForgeAWatchLine) {
  testing::FakeController controller;
  ASSERT_TRUE(controller.ok());
  std::vector<v1::TimelineEvent> events;
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    v1::TimelineEvent event;
    event.set_seq(seq);
    event.set_time_unix_ms(kNowMs);
    event.set_incident_id(seq == 2 ? kHostile : "inc-1");
    event.set_kind(seq == 2 ? kHostile : "note");
    event.set_actor(seq == 2 ? kHostile : "alice");
    event.set_summary(seq == 2 ? kHostile : "fine");
    events.push_back(event);
  }
  controller.service().SetEvents(events);
  WatchRun watch({"--controller=" + controller.address(), "--insecure", "watch"});
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!absl::StrContains(watch.out(), "#3") && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(watch.Stop(), 0);
  const std::string out = watch.out();
  EXPECT_TRUE(OnlyVisible(out));
  std::vector<std::string> lines = Lines(out);
  ASSERT_EQ(lines.size(), 3u) << out;
  EXPECT_EQ(lines[1],
            "2023-11-14 22:13:20Z  #2  " + kShown + "  " + kShown + "  " + kShown + "  " + kShown);
  EXPECT_EQ(lines[2], "2023-11-14 22:13:20Z  #3  inc-1  note  alice  fine");
}

}  // namespace
}  // namespace vigil::cli
