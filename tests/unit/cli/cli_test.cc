// Runs the vigil command line in-process against a fake controller and checks what people and
// scripts see: tables, JSON, exit statuses, one-line errors, the requests sent.
#include "cli/cli.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <streambuf>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "cli/actions_cmd.h"
#include "cli/audit_cmd.h"
#include "cli/output.h"
#include "common/audit/checkpoint.h"
#include "common/ed25519.h"
#include "common/clock.h"
#include "tests/unit/cli/fake_controller.h"

namespace vigil::cli {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using testing::FakeController;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr int64_t kNowMs = 1'700'000'000'000;

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

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout = absl::Seconds(10)) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return condition();
}

// A port on 127.0.0.1 that nothing listens on.
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

v1::TimelineEvent Event(uint64_t seq, const std::string& kind, const std::string& summary) {
  v1::TimelineEvent event;
  event.set_seq(seq);
  event.set_incident_id("inc-1");
  event.set_time_unix_ms(kNowMs - 60'000 + static_cast<int64_t>(seq) * 1000);
  event.set_kind(kind);
  event.set_actor("controller");
  event.set_summary(summary);
  return event;
}

v1::Incident SampleIncident() {
  v1::Incident incident;
  incident.set_id("inc-1");
  incident.set_title("API p95 latency above 2 s");
  incident.set_severity(v1::SEV2);
  incident.set_state(v1::ACKNOWLEDGED);
  incident.set_opened_unix_ms(kNowMs - 300'000);
  incident.set_acknowledged_unix_ms(kNowMs - 120'000);
  incident.set_acknowledged_by("alice");
  incident.add_agents("web-1");
  incident.add_agents("web-2");
  incident.add_services("rag-api");
  incident.add_alert_rules("HighAPILatency");
  incident.set_probable_cause("db-1/DBConnectionsExhausted");
  incident.set_probable_cause_reason("web-1 and web-2 depend on db-1");
  auto* done = incident.add_checklist();
  done->set_name("root_cause_identified");
  done->set_done(true);
  done->set_done_by("alice");
  done->set_done_unix_ms(kNowMs - 60'000);
  incident.add_checklist()->set_name("customers_informed");
  incident.set_last_event_seq(7);
  return incident;
}

v1::ActionProposal SampleProposal() {
  v1::ActionProposal proposal;
  proposal.set_id("act-1");
  proposal.set_incident_id("inc-1");
  proposal.set_action("restart_service");
  (*proposal.mutable_params())["unit"] = "azalscore@1";
  proposal.add_agents("web-1");
  proposal.add_agents("web-2");
  proposal.set_proposed_by("alice");
  proposal.add_approved_by("bob");
  proposal.set_state(v1::APPROVED);
  proposal.set_proposed_unix_ms(kNowMs - 30'000);
  proposal.set_approvals_required(1);
  proposal.set_wave_size(1);
  proposal.set_reason("workers stuck");
  auto* run = proposal.add_runs();
  run->set_agent_id("web-1");
  run->set_state("finished");
  run->set_exit_code(0);
  run->set_duration_ms(1200);
  run->set_output_tail("stopping\nstarted azalscore@1\n");
  run->set_wave(1);
  return proposal;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"VIGIL_TOKEN", "VIGIL_CONTROLLER", "VIGIL_INSECURE", "VIGIL_TLS_CA",
                             "VIGIL_TLS_CERT", "VIGIL_TLS_KEY"}) {
      unsetenv(name);
    }
    ASSERT_TRUE(controller_.ok());
    // What `audit verify` remembers stays with this test.
    state_dir_ = ::testing::TempDir() + "/vigil_cli_state_XXXXXX";
    ASSERT_NE(mkdtemp(state_dir_.data()), nullptr);
    setenv("VIGIL_STATE_DIR", state_dir_.c_str(), 1);
  }
  void TearDown() override {
    for (const char* name : {"VIGIL_INSECURE", "VIGIL_TLS_CA", "VIGIL_TLS_CERT", "VIGIL_TLS_KEY",
                             "VIGIL_STATE_DIR"}) {
      unsetenv(name);
    }
    std::filesystem::remove_all(state_dir_);
  }
  std::string state_dir_;

  // Runs `vigil --controller=<fake> --insecure args...` (the fake serves plain text on loopback).
  int Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--controller=" + controller_.address(), "--insecure"});
    return RunRaw(std::move(args));
  }
  int RunRaw(const std::vector<std::string>& args) {
    out_.str("");
    err_.str("");
    CliContext context;
    context.clock = &clock_;
    return RunCli(args, out_, err_, context);
  }
  testing::FakeControlService& fake() { return controller_.service(); }

  SimulatedClock clock_{absl::FromUnixMillis(kNowMs)};
  FakeController controller_;
  std::ostringstream out_;
  std::ostringstream err_;
};

v1::ListAgentsResponse SampleAgents() {
  v1::ListAgentsResponse response;
  v1::AgentInfo* web = response.add_agents();
  web->set_agent_id("web-1");
  web->set_hostname("web-1.prod");
  (*web->mutable_labels())["role"] = "api";
  web->set_state(v1::CONNECTED);
  web->set_last_seen_unix_ms(kNowMs - 2'000);
  web->set_cpu_usage_ratio(0.42);
  web->set_memory_used_ratio(0.615);
  web->set_disk_used_ratio(-1);
  v1::AgentInfo* db = response.add_agents();
  db->set_agent_id("db-1");
  db->set_hostname("db-1.prod");
  db->set_state(v1::DISCONNECTED);
  db->set_last_seen_unix_ms(kNowMs - 600'000);
  db->set_cpu_usage_ratio(-1);
  db->set_memory_used_ratio(-1);
  db->set_disk_used_ratio(0.97);
  db->set_lost_batches(12);
  return response;
}

TEST_F(CliTest, AgentsTableHasTheContractColumns) {
  fake().SetResponse("ListAgents", SampleAgents());
  ASSERT_EQ(Run({"agents"}), 0) << err_.str();
  EXPECT_EQ(err_.str(), "");
  std::vector<std::string> lines = Lines(out_.str());
  ASSERT_EQ(lines.size(), 3u) << out_.str();
  EXPECT_EQ(lines[0],
            "ID      HOST         ROLE   STATE          LAST SEEN   CPU   MEM   DISK   LOST");
  EXPECT_EQ(lines[1], "web-1   web-1.prod   api    connected      2s ago      42%   62%   -      0");
  EXPECT_EQ(lines[2], "db-1    db-1.prod    -      disconnected   10m ago     -     -     97%    12");
}

TEST_F(CliTest, JsonOutputUsesProtoFieldNames) {
  fake().SetResponse("ListAgents", SampleAgents());
  ASSERT_EQ(Run({"-o", "json", "agents"}), 0) << err_.str();
  const std::string json = out_.str();
  EXPECT_THAT(json, AllOf(HasSubstr("\"agent_id\": \"web-1\""), HasSubstr("\"last_seen_unix_ms\""),
                          HasSubstr("\"cpu_usage_ratio\""), Not(HasSubstr("agentId"))));
  v1::ListAgentsResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok());
  EXPECT_EQ(parsed.SerializeAsString(), SampleAgents().SerializeAsString());
}

TEST_F(CliTest, OutputFlagMayFollowTheVerb) {
  fake().SetResponse("ListIncidents", v1::ListIncidentsResponse());
  ASSERT_EQ(Run({"incidents", "-o", "json"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("\"incidents\": []"));
}

TEST_F(CliTest, TokenIsSentAsBearerMetadata) {
  fake().SetResponse("ListAgents", SampleAgents());
  ASSERT_EQ(Run({"--token=s3cret", "agents"}), 0) << err_.str();
  EXPECT_EQ(fake().LastAuthorization(), "Bearer s3cret");
}

TEST_F(CliTest, TokenAndControllerComeFromTheEnvironment) {
  fake().SetResponse("WhoAmI", [] {
    v1::WhoAmIResponse who;
    who.set_user("alice");
    who.set_role("commander");
    return who;
  }());
  setenv("VIGIL_TOKEN", "from-env", 1);
  setenv("VIGIL_CONTROLLER", controller_.address().c_str(), 1);
  ASSERT_EQ(RunRaw({"--insecure", "whoami"}), 0) << err_.str();
  EXPECT_EQ(fake().LastAuthorization(), "Bearer from-env");
  EXPECT_THAT(out_.str(), HasSubstr("alice (commander)"));
}

TEST_F(CliTest, TokenWithALineBreakIsAUsageErrorNamingTheFlag) {
  fake().SetResponse("ListAgents", SampleAgents());
  const std::vector<std::string> tokens = {"s3cret\r\nx-injected: 1",
                                           "s3cret\n",
                                           "s3\x01"
                                           "cret",
                                           std::string("s3\0cret", 7),
                                           "s3cr\x7f",
                                           "s3cr\xc3\xa9t"};
  for (const std::string& token : tokens) {
    EXPECT_EQ(Run({"--token=" + token, "agents"}), 2) << token;
    ASSERT_EQ(Lines(err_.str()).size(), 1u) << err_.str();
    EXPECT_THAT(err_.str(), AllOf(StartsWith("vigil: --token holds a "),
                                  HasSubstr("a token is one line of printable ASCII")));
    EXPECT_THAT(err_.str(), Not(HasSubstr("s3")));  // the token itself is never printed
  }
  EXPECT_EQ(Run({"--token=s3cret\r\n", "agents"}), 2);
  EXPECT_EQ(err_.str(),
            "vigil: --token holds a control character (\\r at byte 7): a token is one line of "
            "printable ASCII\n");
  EXPECT_EQ(fake().TotalCalls(), 0);
}

TEST_F(CliTest, TokenFromTheEnvironmentIsCheckedAndNamed) {
  fake().SetResponse("ListAgents", SampleAgents());
  setenv("VIGIL_TOKEN", "from-env\n", 1);
  EXPECT_EQ(Run({"agents"}), 2);
  EXPECT_EQ(err_.str(),
            "vigil: VIGIL_TOKEN holds a control character (\\n at byte 9): a token is one line "
            "of printable ASCII\n");
  EXPECT_EQ(fake().TotalCalls(), 0);
  // The flag wins over the variable, as for every other setting.
  EXPECT_EQ(Run({"--token=good", "agents"}), 0) << err_.str();
  EXPECT_EQ(fake().LastAuthorization(), "Bearer good");
  unsetenv("VIGIL_TOKEN");
}

TEST_F(CliTest, VersionNeedsNothingElse) {
  EXPECT_EQ(RunRaw({"--version"}), 0);
  EXPECT_EQ(out_.str(), "vigil " VIGIL_VERSION "\n");
  EXPECT_EQ(err_.str(), "");
  EXPECT_EQ(Run({"--version"}), 0);
  EXPECT_EQ(out_.str(), "vigil " VIGIL_VERSION "\n");
  EXPECT_EQ(fake().TotalCalls(), 0);
}

TEST_F(CliTest, InsecureIsRefusedForNamesThatOnlyLookLocal) {
  for (const std::string address :
       {"127.attacker.example:7443", "127.0.0.1.nip.io:7443", "localhost.evil:7443"}) {
    EXPECT_EQ(RunRaw({"--controller=" + address, "--insecure", "agents"}), 2) << address;
    EXPECT_EQ(err_.str(), "vigil: --insecure is refused for " + address +
                              ": plain text is allowed on loopback only\n");
  }
  EXPECT_EQ(fake().TotalCalls(), 0);
}

TEST_F(CliTest, NoTokenSendsNoAuthorization) {
  fake().SetResponse("ListAgents", SampleAgents());
  ASSERT_EQ(Run({"agents"}), 0);
  EXPECT_EQ(fake().LastAuthorization(), "<none>");
}

TEST_F(CliTest, UnknownFlagIsAUsageErrorOnOneLine) {
  EXPECT_EQ(Run({"agents", "--bogus"}), 2);
  EXPECT_EQ(Lines(err_.str()).size(), 1u) << err_.str();
  EXPECT_THAT(err_.str(), AllOf(StartsWith("vigil: "), HasSubstr("--bogus"), HasSubstr("--help")));
  EXPECT_EQ(fake().TotalCalls(), 0);
}

TEST_F(CliTest, MissingVerbAndBadValuesAreUsageErrors) {
  EXPECT_EQ(Run({}), 2);
  EXPECT_EQ(Run({"incident"}), 2);
  EXPECT_EQ(Run({"metrics"}), 2);
  EXPECT_EQ(Run({"-o", "yaml", "agents"}), 2);
  EXPECT_EQ(Run({"--timeout=soon", "agents"}), 2);
  EXPECT_EQ(Run({"incidents", "--state=sleeping"}), 2);
  EXPECT_EQ(Run({"audit", "export", "inc-1", "--format=pdf"}), 2);
  EXPECT_EQ(fake().TotalCalls(), 0);
}

TEST_F(CliTest, HelpExitsZero) {
  EXPECT_EQ(Run({"--help"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("watch"));
  EXPECT_EQ(Run({"action", "propose", "--help"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("--wave-size"));
}

TEST_F(CliTest, UnreachableControllerFailsWithOneLine) {
  const std::string address = "127.0.0.1:" + std::to_string(ClosedPort());
  EXPECT_EQ(RunRaw({"--controller=" + address, "--insecure", "agents"}), 1);
  EXPECT_EQ(err_.str(), "vigil: cannot reach controller at " + address +
                            ": connection refused (is vigil-controller running? set "
                            "--controller or VIGIL_CONTROLLER)\n");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(CliTest, WithoutTlsOrInsecureIsAUsageErrorOnOneLine) {
  EXPECT_EQ(RunRaw({"--controller=" + controller_.address(), "agents"}), 2);
  EXPECT_EQ(Lines(err_.str()).size(), 1u) << err_.str();
  EXPECT_THAT(err_.str(),
              AllOf(StartsWith("vigil: no transport security"), HasSubstr("--tls-ca"),
                    HasSubstr("--tls-cert"), HasSubstr("--tls-key"), HasSubstr("VIGIL_TLS_CA"),
                    HasSubstr("--insecure"), HasSubstr("loopback")));
  EXPECT_EQ(out_.str(), "");
  EXPECT_EQ(fake().TotalCalls(), 0);
}

TEST_F(CliTest, InsecureComesFromTheEnvironment) {
  fake().SetResponse("ListAgents", SampleAgents());
  setenv("VIGIL_INSECURE", "1", 1);
  EXPECT_EQ(RunRaw({"--controller=" + controller_.address(), "agents"}), 0) << err_.str();
  setenv("VIGIL_INSECURE", "0", 1);
  EXPECT_EQ(RunRaw({"--controller=" + controller_.address(), "agents"}), 2) << err_.str();
  EXPECT_EQ(fake().TotalCalls(), 1);
}

TEST_F(CliTest, InsecureIsRefusedForAControllerOffLoopback) {
  EXPECT_EQ(RunRaw({"--controller=192.0.2.1:7443", "--insecure", "agents"}), 2);
  EXPECT_EQ(err_.str(),
            "vigil: --insecure is refused for 192.0.2.1:7443: plain text is allowed "
            "on loopback only\n");
}

TEST_F(CliTest, TlsFilesComeFromTheEnvironmentAndFlagsWin) {
  fake().SetResponse("ListAgents", SampleAgents());
  setenv("VIGIL_TLS_CA", "/nonexistent/ca.pem", 1);
  setenv("VIGIL_TLS_CERT", "/nonexistent/user.pem", 1);
  setenv("VIGIL_TLS_KEY", "/nonexistent/user.key", 1);
  setenv("VIGIL_INSECURE", "1", 1);  // the TLS files are more specific
  EXPECT_EQ(RunRaw({"--controller=" + controller_.address(), "agents"}), 2);
  EXPECT_THAT(err_.str(), StartsWith("vigil: --tls-ca=/nonexistent/ca.pem: cannot read"));
  // A --tls-* flag replaces its variable only.
  EXPECT_EQ(
      RunRaw({"--controller=" + controller_.address(), "--tls-ca=/elsewhere/ca.pem", "agents"}), 2);
  EXPECT_THAT(err_.str(), StartsWith("vigil: --tls-ca=/elsewhere/ca.pem: cannot read"));
  // --insecure on the command line sets all the VIGIL_TLS_* aside.
  EXPECT_EQ(Run({"agents"}), 0) << err_.str();
  EXPECT_EQ(fake().TotalCalls(), 1);
}

TEST_F(CliTest, InsecureAndTlsFlagsTogetherAreAUsageError) {
  EXPECT_EQ(Run({"--tls-ca=/tmp/ca.pem", "agents"}), 2);
  EXPECT_THAT(err_.str(), AllOf(StartsWith("vigil: --insecure and --tls-ca"), HasSubstr("--help")));
  EXPECT_EQ(fake().TotalCalls(), 0);
}

TEST_F(CliTest, NotFoundPrintsTheControllersMessage) {
  fake().SetError("GetMetrics",
                  grpc::Status(grpc::StatusCode::NOT_FOUND, "agent 'web-9' not found"));
  EXPECT_EQ(Run({"metrics", "web-9", "--prefix", "host_"}), 1);
  EXPECT_EQ(err_.str(), "vigil: agent 'web-9' not found\n");
  auto request = fake().LastRequest<v1::GetMetricsRequest>("GetMetrics");
  EXPECT_EQ(request.agent_id(), "web-9");
  EXPECT_EQ(request.name_prefix(), "host_");
}

TEST_F(CliTest, UnimplementedFailsCleanly) {
  EXPECT_EQ(Run({"alerts"}), 1);  // the fake has no answer for ListAlerts
  ASSERT_EQ(Lines(err_.str()).size(), 1u) << err_.str();
  EXPECT_THAT(err_.str(), AllOf(StartsWith("vigil: "), HasSubstr("does not implement ListAlerts")));
}

TEST_F(CliTest, SlowControllerHitsTheDeadline) {
  fake().SetResponse("ListAgents", SampleAgents());
  fake().SetDelay(absl::Seconds(3));
  absl::Time start = absl::Now();
  EXPECT_EQ(Run({"--timeout=200ms", "agents"}), 1);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2)) << "gave up at its deadline, not the answer";
  EXPECT_EQ(err_.str(), "vigil: controller at " + controller_.address() +
                            " did not answer ListAgents within 200ms (see --timeout)\n");
}

TEST_F(CliTest, UsersListTableAndJson) {
  v1::ListUsersResponse users;
  v1::UserInfo* alice = users.add_users();
  alice->set_name("alice");
  alice->set_role("admin");
  alice->set_created_unix_ms(1'800'000'000'000);
  alice->set_expires_unix_ms(1'807'776'000'000);
  alice->set_rotated_unix_ms(1'800'000'060'000);
  v1::UserInfo* bob = users.add_users();
  bob->set_name("bob");
  bob->set_role("viewer");
  bob->set_created_unix_ms(1'800'000'000'000);
  bob->set_disabled(true);
  bob->set_disabled_unix_ms(1'800'000'001'000);
  fake().SetResponse("ListUsers", users);
  ASSERT_EQ(Run({"users", "list"}), 0) << err_.str();
  EXPECT_EQ(out_.str(),
            "NAME    ROLE     CREATED                EXPIRES                DISABLED               "
            "ROTATED\n"
            "alice   admin    2027-01-15 08:00:00Z   2027-04-15 08:00:00Z   -                      "
            "2027-01-15 08:01:00Z\n"
            "bob     viewer   2027-01-15 08:00:00Z   never                  2027-01-15 08:00:01Z   "
            "-\n");
  out_.str("");
  ASSERT_EQ(Run({"users", "list", "-o", "json"}), 0) << err_.str();
  v1::ListUsersResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out_.str(), &parsed).ok());
  EXPECT_EQ(parsed.SerializeAsString(), users.SerializeAsString());
  EXPECT_THAT(out_.str(), HasSubstr("\"disabled_unix_ms\""));
}

TEST_F(CliTest, UsersDisableEnableAndRotateSendTheName) {
  v1::UserInfo bob;
  bob.set_name("bob");
  bob.set_disabled(true);
  bob.set_disabled_unix_ms(1'800'000'000'000);
  fake().SetResponse("DisableUser", bob);
  ASSERT_EQ(Run({"users", "disable", "bob"}), 0) << err_.str();
  EXPECT_EQ(fake().LastRequest<v1::DisableUserRequest>("DisableUser").name(), "bob");
  EXPECT_EQ(out_.str(), "user bob disabled since 2027-01-15 08:00:00Z\n");

  out_.str("");
  bob.set_disabled(false);
  fake().SetResponse("EnableUser", bob);
  ASSERT_EQ(Run({"users", "enable", "bob"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "user bob enabled\n");

  out_.str("");
  err_.str("");
  v1::RotateUserTokenResponse rotated;
  *rotated.mutable_user() = bob;
  rotated.set_token("vgt_new");
  fake().SetResponse("RotateUserToken", rotated);
  ASSERT_EQ(Run({"users", "rotate", "bob", "--expires-in", "12h"}), 0) << err_.str();
  auto request = fake().LastRequest<v1::RotateUserTokenRequest>("RotateUserToken");
  EXPECT_EQ(request.name(), "bob");
  EXPECT_EQ(request.expires_in(), "12h");
  EXPECT_EQ(out_.str(), "vgt_new\n");  // the token alone, for $(...)
  EXPECT_THAT(err_.str(), HasSubstr("never expires"));

  err_.str("");
  fake().SetError("DisableUser", grpc::Status(grpc::StatusCode::NOT_FOUND, "no user named 'carol'"));
  EXPECT_EQ(Run({"users", "disable", "carol"}), 1);
  EXPECT_EQ(err_.str(), "vigil: no user named 'carol'\n");
  EXPECT_EQ(Run({"users", "disable"}), 2);  // the name is required
}

TEST_F(CliTest, MetricsShowsQuantilesOnlyForHistogramsThenDiagnostics) {
  v1::GetMetricsResponse response;
  response.set_agent_id("web-1");
  v1::MetricValue* cpu = response.add_metrics();
  cpu->set_name("host_cpu_usage_ratio");
  cpu->set_value(0.4213);
  v1::MetricValue* latency = response.add_metrics();
  latency->set_name("nginx_request_duration_seconds");
  (*latency->mutable_labels())["vhost"] = "api";
  latency->set_is_histogram(true);
  latency->set_value(1500);
  latency->set_p50(0.12);
  latency->set_p95(2.5);
  latency->set_p99(4.75);
  v1::DiagnosticTable* top = response.add_diagnostics();
  top->set_name("top_processes");
  top->add_columns("PID");
  top->add_columns("COMMAND");
  top->add_rows()->add_cells("4242");
  top->mutable_rows(0)->add_cells("azalscore");
  top->set_collected_unix_ms(kNowMs - 5'000);
  v1::DiagnosticTable* pg = response.add_diagnostics();
  pg->set_name("pg_active_queries");
  pg->set_error("connection refused");
  fake().SetResponse("GetMetrics", response);

  ASSERT_EQ(Run({"metrics", "web-1"}), 0) << err_.str();
  std::vector<std::string> lines = Lines(out_.str());
  ASSERT_GE(lines.size(), 8u) << out_.str();
  EXPECT_EQ(lines[0], "NAME                             LABELS      VALUE    P50    P95   P99");
  EXPECT_EQ(lines[1], "host_cpu_usage_ratio             -           0.4213   -      -     -");
  EXPECT_EQ(lines[2], "nginx_request_duration_seconds   vhost=api   1500     0.12   2.5   4.75");
  EXPECT_EQ(lines[3], "top_processes (collected 5s ago)");
  EXPECT_EQ(lines[4], "  PID    COMMAND");
  EXPECT_EQ(lines[5], "  4242   azalscore");
  EXPECT_EQ(lines[6], "pg_active_queries (collected -)");
  EXPECT_EQ(lines[7], "  error: connection refused");
}

TEST_F(CliTest, IncidentsTableAndStateFilter) {
  v1::ListIncidentsResponse response;
  *response.add_incidents() = SampleIncident();
  fake().SetResponse("ListIncidents", response);
  ASSERT_EQ(Run({"incidents", "--state=active"}), 0) << err_.str();
  EXPECT_EQ(fake().LastRequest<v1::ListIncidentsRequest>("ListIncidents").state(), "active");
  std::vector<std::string> lines = Lines(out_.str());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0],
            "ID      SEV    STATE          TITLE                       HOSTS         OPENED   "
            "PROBABLE CAUSE");
  EXPECT_EQ(lines[1],
            "inc-1   SEV2   acknowledged   API p95 latency above 2 s   web-1,web-2   5m ago   "
            "db-1/DBConnectionsExhausted");
}

TEST_F(CliTest, IncidentShowRendersEverySection) {
  v1::GetIncidentResponse response;
  *response.mutable_incident() = SampleIncident();
  *response.add_timeline() = Event(6, "alert_fired", "HighAPILatency on web-1");
  *response.add_timeline() = Event(7, "acknowledged", "alice is on it");
  v1::Alert* alert = response.add_alerts();
  alert->set_id("al-1");
  alert->set_rule("HighAPILatency");
  alert->set_severity(v1::SEV2);
  alert->set_state(v1::FIRING);
  alert->set_agent_id("web-1");
  alert->set_value(2.7);
  alert->set_fired_unix_ms(kNowMs - 290'000);
  alert->set_incident_id("inc-1");
  alert->set_summary("API p95 latency above 2 s");
  *response.add_actions() = SampleProposal();
  fake().SetResponse("GetIncident", response);

  ASSERT_EQ(Run({"incident", "show", "inc-1"}), 0) << err_.str();
  EXPECT_EQ(fake().LastRequest<v1::GetIncidentRequest>("GetIncident").incident_id(), "inc-1");
  const std::string text = out_.str();
  EXPECT_THAT(text, StartsWith("Incident inc-1: API p95 latency above 2 s\n"));
  EXPECT_THAT(text, HasSubstr("  State:            acknowledged\n"));
  EXPECT_THAT(text, HasSubstr("  Acknowledged:     2023-11-14 22:11:20Z (2m ago) by alice\n"));
  EXPECT_THAT(text, HasSubstr("  Hosts:            web-1, web-2\n"));
  EXPECT_THAT(text, HasSubstr("  Probable cause:   db-1/DBConnectionsExhausted (web-1 and web-2 "
                              "depend on db-1)\n"));
  EXPECT_THAT(text, HasSubstr("Checklist:\n  [x] root_cause_identified  (alice, "
                              "2023-11-14 22:12:20Z)\n  [ ] customers_informed\n"));
  EXPECT_THAT(text, HasSubstr("Alerts:\n  ID     RULE"));
  EXPECT_THAT(text, HasSubstr("  al-1   HighAPILatency   SEV2   firing   web-1   2.7     4m ago"));
  EXPECT_THAT(text, HasSubstr("Actions:\n  ID      INCIDENT   ACTION"));
  EXPECT_THAT(text, HasSubstr("act-1   inc-1      restart_service   unit=azalscore@1"));
  EXPECT_THAT(text, HasSubstr("Timeline:\n  TIME                   SEQ   KIND           ACTOR"));
  EXPECT_THAT(text, HasSubstr("  2023-11-14 22:12:27Z   7     acknowledged   controller   alice is "
                              "on it\n"));
}

TEST_F(CliTest, IncidentShowAsksForPagesAndRefusesACursorThatDoesNotMove) {
  v1::GetIncidentResponse response;
  *response.mutable_incident() = SampleIncident();
  *response.add_timeline() = Event(6, "alert_fired", "HighAPILatency on web-1");
  fake().SetResponse("GetIncident", response);
  ASSERT_EQ(Run({"incident", "show", "inc-1"}), 0) << err_.str();
  EXPECT_EQ(fake().Calls("GetIncident"), 1);  // no cursor: the last page
  auto first = fake().LastRequest<v1::GetIncidentRequest>("GetIncident");
  EXPECT_EQ(first.page_size(), 5000);
  EXPECT_EQ(first.after_seq(), 0u);

  // A controller that keeps answering "more after seq 6" would page forever.
  response.set_next_after_seq(6);
  fake().SetResponse("GetIncident", response);
  out_.str("");
  err_.str("");
  EXPECT_EQ(Run({"incident", "show", "inc-1"}), 1);
  EXPECT_EQ(fake().Calls("GetIncident"), 3);
  EXPECT_EQ(fake().LastRequest<v1::GetIncidentRequest>("GetIncident").after_seq(), 6u);
  EXPECT_EQ(out_.str(), "");
  EXPECT_EQ(err_.str(),
            "vigil: GetIncident inc-1: the controller's next page starts after seq 6, not after "
            "6 (a broken cursor)\n");
}

TEST_F(CliTest, IncidentUpdatesSendTheOperation) {
  v1::Incident incident = SampleIncident();
  fake().SetResponse("UpdateIncident", incident);

  ASSERT_EQ(Run({"incident", "ack", "inc-1"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "incident inc-1 acknowledged: now acknowledged, SEV2\n");
  EXPECT_EQ(fake().LastRequest<v1::UpdateIncidentRequest>("UpdateIncident").operation(),
            v1::UpdateIncidentRequest::ACKNOWLEDGE);

  ASSERT_EQ(Run({"incident", "note", "inc-1", "pool", "saturated", "on db-1"}), 0);
  auto note = fake().LastRequest<v1::UpdateIncidentRequest>("UpdateIncident");
  EXPECT_EQ(note.operation(), v1::UpdateIncidentRequest::NOTE);
  EXPECT_EQ(note.text(), "pool saturated on db-1");

  ASSERT_EQ(Run({"incident", "check", "inc-1", "root_cause_identified"}), 0);
  auto check = fake().LastRequest<v1::UpdateIncidentRequest>("UpdateIncident");
  EXPECT_EQ(check.operation(), v1::UpdateIncidentRequest::CHECK);
  EXPECT_EQ(check.checklist_item(), "root_cause_identified");

  ASSERT_EQ(Run({"incident", "severity", "inc-1", "sev1"}), 0);
  EXPECT_EQ(fake().LastRequest<v1::UpdateIncidentRequest>("UpdateIncident").severity(), v1::SEV1);

  ASSERT_EQ(Run({"incident", "resolve", "inc-1", "restarted workers"}), 0);
  auto resolve = fake().LastRequest<v1::UpdateIncidentRequest>("UpdateIncident");
  EXPECT_EQ(resolve.operation(), v1::UpdateIncidentRequest::RESOLVE);
  EXPECT_EQ(resolve.text(), "restarted workers");

  ASSERT_EQ(Run({"incident", "mitigate", "inc-1"}), 0);
  EXPECT_EQ(fake().LastRequest<v1::UpdateIncidentRequest>("UpdateIncident").operation(),
            v1::UpdateIncidentRequest::MITIGATE);

  int calls = fake().Calls("UpdateIncident");
  EXPECT_EQ(Run({"incident", "severity", "inc-1", "SEV9"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("'SEV9'"));
  EXPECT_EQ(Run({"incident", "note", "inc-1"}), 2);
  EXPECT_EQ(fake().Calls("UpdateIncident"), calls);
}

TEST_F(CliTest, FailedPreconditionShowsTheReason) {
  fake().SetError("UpdateIncident", grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                                 "incident inc-1 is already resolved"));
  EXPECT_EQ(Run({"incident", "ack", "inc-1"}), 1);
  EXPECT_EQ(err_.str(), "vigil: incident inc-1 is already resolved\n");
}

TEST_F(CliTest, ProposeSendsAgentsParamsWaveAndReason) {
  fake().SetResponse("ProposeAction", SampleProposal());
  ASSERT_EQ(Run({"action", "propose", "inc-1", "--agent", "web-1", "--agent=web-2", "--action",
                 "restart_service", "--param", "unit=azalscore@1", "--param", "env=A=B", "--param",
                 "empty=", "--wave-size", "1", "--reason", "workers stuck"}),
            0)
      << err_.str();
  auto request = fake().LastRequest<v1::ProposeActionRequest>("ProposeAction");
  EXPECT_EQ(request.incident_id(), "inc-1");
  EXPECT_THAT(request.agents(), ElementsAre("web-1", "web-2"));
  EXPECT_EQ(request.action(), "restart_service");
  EXPECT_EQ(request.params().size(), 3u);
  EXPECT_EQ(request.params().at("unit"), "azalscore@1");
  EXPECT_EQ(request.params().at("env"), "A=B");
  EXPECT_EQ(request.params().at("empty"), "");
  EXPECT_EQ(request.wave_size(), 1);
  EXPECT_EQ(request.reason(), "workers stuck");
  EXPECT_THAT(out_.str(), StartsWith("Action act-1: restart_service on web-1, web-2\n"));
  EXPECT_THAT(out_.str(), HasSubstr("  Approvals:   1/1 (bob)\n"));
  EXPECT_THAT(out_.str(),
              HasSubstr("Runs:\n  AGENT   WAVE   STATE      EXIT   DURATION   REASON   "
                        "OUTPUT\n  web-1   1      finished   0      1.2s       -        "
                        "started azalscore@1\n"));
}

TEST_F(CliTest, ParamWithoutEqualsIsAUsageErrorNamingIt) {
  fake().SetResponse("ProposeAction", SampleProposal());
  EXPECT_EQ(Run({"action", "propose", "inc-1", "--agent", "web-1", "--action", "restart_service",
                 "--param", "unit"}),
            2);
  EXPECT_EQ(err_.str(),
            "vigil: --param 'unit' is not KEY=VALUE (run 'vigil action propose --help')\n");
  EXPECT_EQ(Run({"action", "propose", "inc-1", "--action", "restart_service"}), 2);  // no --agent
  EXPECT_EQ(fake().Calls("ProposeAction"), 0);
}

TEST_F(CliTest, ApproveAndRejectSendTheReview) {
  fake().SetResponse("ReviewAction", SampleProposal());
  ASSERT_EQ(Run({"action", "approve", "act-1"}), 0) << err_.str();
  auto approve = fake().LastRequest<v1::ReviewActionRequest>("ReviewAction");
  EXPECT_EQ(approve.proposal_id(), "act-1");
  EXPECT_TRUE(approve.approve());
  ASSERT_EQ(Run({"action", "reject", "act-1", "--comment", "too risky"}), 0);
  auto reject = fake().LastRequest<v1::ReviewActionRequest>("ReviewAction");
  EXPECT_FALSE(reject.approve());
  EXPECT_EQ(reject.comment(), "too risky");

  fake().SetError("ReviewAction",
                  grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "the proposer cannot approve"));
  EXPECT_EQ(Run({"action", "approve", "act-1"}), 1);
  EXPECT_EQ(err_.str(), "vigil: permission denied: the proposer cannot approve\n");
}

TEST_F(CliTest, ActionsListFiltersByIncident) {
  v1::ListActionsResponse response;
  *response.add_actions() = SampleProposal();
  fake().SetResponse("ListActions", response);
  ASSERT_EQ(Run({"actions", "--incident", "inc-1"}), 0) << err_.str();
  EXPECT_EQ(fake().LastRequest<v1::ListActionsRequest>("ListActions").incident_id(), "inc-1");
  std::vector<std::string> lines = Lines(out_.str());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0],
            "ID      INCIDENT   ACTION            PARAMS             AGENTS        STATE      "
            "APPROVALS   PROPOSED BY   PROPOSED");
  EXPECT_EQ(lines[1],
            "act-1   inc-1      restart_service   unit=azalscore@1   web-1,web-2   approved   "
            "1/1         alice         30s ago");
}

TEST_F(CliTest, AlertsAllIncludesResolved) {
  v1::ListAlertsResponse response;
  v1::Alert* fleet = response.add_alerts();
  fleet->set_id("al-2");
  fleet->set_rule("LowThroughput");
  fleet->set_severity(v1::SEV3);
  fleet->set_state(v1::RESOLVED);
  fleet->set_value(42);
  fleet->set_expr("sum(nginx_requests_per_second) < 100");
  fleet->set_active_since_unix_ms(kNowMs - 3'600'000);
  fake().SetResponse("ListAlerts", response);
  ASSERT_EQ(Run({"alerts", "--all"}), 0) << err_.str();
  EXPECT_TRUE(fake().LastRequest<v1::ListAlertsRequest>("ListAlerts").include_resolved());
  EXPECT_THAT(out_.str(), HasSubstr("al-2   LowThroughput   SEV3   resolved   (fleet)   42      "
                                    "1h ago   -          sum(nginx_requests_per_second) < 100"));
  ASSERT_EQ(Run({"alerts"}), 0);
  EXPECT_FALSE(fake().LastRequest<v1::ListAlertsRequest>("ListAlerts").include_resolved());
}

TEST_F(CliTest, AuditVerifyReportsOkOrBroken) {
  v1::VerifyAuditResponse ok;
  ok.set_ok(true);
  ok.set_events_checked(1234);
  ok.set_verified_from_seq(1);
  ok.set_head_seq(1234);
  fake().SetResponse("VerifyAudit", ok);
  EXPECT_EQ(Run({"audit", "verify"}), 0);
  EXPECT_EQ(out_.str(),
            "audit chain OK: 1234 events checked (the whole chain), head 1234, no signed "
            "checkpoint yet\n");

  v1::VerifyAuditResponse broken;
  broken.set_ok(false);
  broken.set_events_checked(40);
  broken.set_first_bad_seq(41);
  broken.set_problem("hash mismatch (event edited?)");
  fake().SetResponse("VerifyAudit", broken);
  EXPECT_EQ(Run({"audit", "verify"}), 1);
  EXPECT_EQ(out_.str(), "audit chain BROKEN at seq 41: hash mismatch (event edited?)\n");
  EXPECT_EQ(Run({"-o", "json", "audit", "verify"}), 1);
  EXPECT_THAT(out_.str(), HasSubstr("\"first_bad_seq\": \"41\""));
}

// The CLI as a witness: it checks the controller's newest checkpoint with the key it saw first,
// keeps it, sends it with the next check, and refuses an older checkpoint or another key.
TEST_F(CliTest, AuditVerifyKeepsTheNewestCheckpointAndRefusesAnOlderOneOrAnotherKey) {
  auto key = Ed25519PrivateKey::Generate();
  audit::CheckpointSigner signer(*std::move(key));
  const std::string hash(64, 'a');
  v1::VerifyAuditResponse response;
  response.set_ok(true);
  response.set_events_checked(20);
  response.set_head_seq(20);
  response.set_audit_public_key_pem(signer.public_key_pem());
  *response.mutable_latest_checkpoint() = *signer.Sign(20, hash, kNowMs);
  fake().SetResponse("VerifyAudit", response);
  ASSERT_EQ(Run({"audit", "verify"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("newest checkpoint 20"));
  // The next check carries it as the witness.
  ASSERT_EQ(Run({"audit", "verify"}), 0) << err_.str();
  EXPECT_EQ(fake().LastRequest<v1::VerifyAuditRequest>("VerifyAudit").witness().seq(), 20u);

  // A controller whose newest checkpoint is older than the one kept: a rollback.
  *response.mutable_latest_checkpoint() = *signer.Sign(12, hash, kNowMs - 1000);
  fake().SetResponse("VerifyAudit", response);
  EXPECT_EQ(Run({"audit", "verify"}), 1);
  EXPECT_THAT(out_.str(), HasSubstr("NOT TRUSTED: rollback"));
  // A checkpoint the key did not sign.
  v1::AuditCheckpoint forged = *signer.Sign(30, hash, kNowMs);
  forged.set_seq(31);
  *response.mutable_latest_checkpoint() = forged;
  fake().SetResponse("VerifyAudit", response);
  EXPECT_EQ(Run({"audit", "verify"}), 1);
  EXPECT_THAT(out_.str(), HasSubstr("bad signature"));
  // Another key than the one seen first.
  auto stranger_key = Ed25519PrivateKey::Generate();
  audit::CheckpointSigner stranger(*std::move(stranger_key));
  response.set_audit_public_key_pem(stranger.public_key_pem());
  *response.mutable_latest_checkpoint() = *stranger.Sign(40, hash, kNowMs);
  fake().SetResponse("VerifyAudit", response);
  EXPECT_EQ(Run({"audit", "verify"}), 1);
  EXPECT_THAT(out_.str(), HasSubstr("not the one this CLI verified before"));
}

TEST_F(CliTest, AuditVerifyOfABundleNeedsNoControllerButItsKey) {
  // No --controller, no transport: an auditor's machine.
  EXPECT_EQ(RunRaw({"audit", "verify", "--bundle", state_dir_ + "/none.json"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("--public-key"));
  std::ofstream(state_dir_ + "/key.pem") << "not a key";
  EXPECT_EQ(RunRaw({"audit", "verify", "--bundle", state_dir_ + "/none.json", "--public-key",
                    state_dir_ + "/key.pem"}),
            1);
  EXPECT_THAT(err_.str(), HasSubstr("key.pem"));
}

class AuditExportTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    std::string pattern = ::testing::TempDir() + "/vigil_cli_export_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    for (const std::string& name : Entries()) unlink((dir_ + "/" + name).c_str());
    rmdir(dir_.c_str());
  }
  std::vector<std::string> Entries() const {
    std::vector<std::string> names;
    if (DIR* d = opendir(dir_.c_str())) {
      while (dirent* entry = readdir(d)) {
        std::string name = entry->d_name;
        if (name != "." && name != "..") names.push_back(name);
      }
      closedir(d);
    }
    return names;
  }
  static std::string Read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  std::string dir_;
};

TEST_F(AuditExportTest, WritesTheFileAtomically) {
  const std::string path = dir_ + "/inc-1.md";
  { std::ofstream(path) << "old report"; }
  v1::ExportIncidentResponse response;
  response.set_content("# Incident inc-1\n\nAPI p95 latency above 2 s\n");
  fake().SetResponse("ExportIncident", response);
  ASSERT_EQ(Run({"audit", "export", "inc-1", "--format", "markdown", "--out", path}), 0)
      << err_.str();
  auto request = fake().LastRequest<v1::ExportIncidentRequest>("ExportIncident");
  EXPECT_EQ(request.incident_id(), "inc-1");
  EXPECT_EQ(request.format(), "markdown");
  EXPECT_EQ(Read(path), response.content());
  EXPECT_THAT(Entries(), ElementsAre("inc-1.md"));  // no temporary file left
  EXPECT_THAT(out_.str(), HasSubstr("to " + path));
}

TEST_F(AuditExportTest, FailedExportLeavesNothing) {
  fake().SetError("ExportIncident",
                  grpc::Status(grpc::StatusCode::NOT_FOUND, "incident 'inc-9' not found"));
  EXPECT_EQ(Run({"audit", "export", "inc-9", "--format=json", "--out", dir_ + "/x.json"}), 1);
  EXPECT_EQ(err_.str(), "vigil: incident 'inc-9' not found\n");
  EXPECT_TRUE(Entries().empty());
}

TEST_F(AuditExportTest, UnwritableDirectoryFailsOnOneLine) {
  v1::ExportIncidentResponse response;
  response.set_content("{}");
  fake().SetResponse("ExportIncident", response);
  EXPECT_EQ(Run({"audit", "export", "inc-1", "--format=json", "--out", dir_ + "/missing/x.json"}),
            1);
  ASSERT_EQ(Lines(err_.str()).size(), 1u);
  EXPECT_THAT(err_.str(), AllOf(HasSubstr(dir_ + "/missing/x.json"), HasSubstr("No such file")));
}

TEST_F(AuditExportTest, WithoutOutPrintsTheContent) {
  v1::ExportIncidentResponse response;
  response.set_content("{\"id\": \"inc-1\"}");
  fake().SetResponse("ExportIncident", response);
  ASSERT_EQ(Run({"audit", "export", "inc-1", "--format=json"}), 0);
  EXPECT_EQ(out_.str(), "{\"id\": \"inc-1\"}\n");
}

TEST_F(AuditExportTest, WriteFileAtomicallyReplacesAndCleansUp) {
  const std::string path = dir_ + "/report";
  ASSERT_TRUE(WriteFileAtomically(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "second").ok());
  EXPECT_EQ(Read(path), "second");
  EXPECT_THAT(Entries(), ElementsAre("report"));
  absl::Status status = WriteFileAtomically(dir_ + "/no/such/dir", "x");
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(Entries(), ElementsAre("report"));
}

// Runs `vigil watch` on a thread, stopped through the interrupt as Ctrl-C would.
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

class WatchRestartTest : public ::testing::TestWithParam<bool> {};

TEST_P(WatchRestartTest, ResumesFromTheLastSeqAfterTheControllerRestarts) {
  std::vector<v1::TimelineEvent> events;
  for (uint64_t seq = 1; seq <= 5; ++seq)
    events.push_back(Event(seq, "note", "event " + std::to_string(seq)));
  auto first = std::make_unique<FakeController>();
  ASSERT_TRUE(first->ok());
  const int port = first->port();
  first->service().SetEvents({events.begin(), events.begin() + 3});

  WatchRun watch({"--controller=127.0.0.1:" + std::to_string(port), "--insecure", "watch",
                  "--incident", "inc-1"});
  ASSERT_TRUE(WaitFor([&] { return Lines(watch.out()).size() == 3; })) << watch.err();
  EXPECT_EQ(first->service().LastRequest<v1::WatchRequest>("Watch").after_seq(), 0u);
  EXPECT_EQ(first->service().LastRequest<v1::WatchRequest>("Watch").incident_id(), "inc-1");

  first->Stop(/*graceful=*/GetParam());  // the controller restarts...
  first.reset();
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(watch.err(), "lost connection"); }));
  FakeController second(port);  // ...on the same port, with two more events
  ASSERT_TRUE(second.ok());
  second.service().SetEvents(events);
  ASSERT_TRUE(WaitFor([&] { return Lines(watch.out()).size() == 5; })) << watch.err();
  EXPECT_EQ(second.service().LastRequest<v1::WatchRequest>("Watch").after_seq(), 3u);

  EXPECT_EQ(watch.Stop(), 0);
  std::vector<std::string> lines = Lines(watch.out());
  ASSERT_EQ(lines.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_THAT(lines[i], HasSubstr("  #" + std::to_string(i + 1) +
                                    "  inc-1  note  controller  "
                                    "event " +
                                    std::to_string(i + 1)));
  }
  EXPECT_THAT(lines[0], StartsWith("2023-11-14 22:12:21Z  #1"));
  std::vector<std::string> notes = Lines(watch.err());
  ASSERT_EQ(notes.size(), 2u) << watch.err();
  EXPECT_THAT(notes[0], StartsWith("vigil: lost connection to controller at 127.0.0.1:"));
  EXPECT_THAT(notes[1], HasSubstr("reconnected to controller at 127.0.0.1:" + std::to_string(port) +
                                  ", resuming after seq 3"));
}

INSTANTIATE_TEST_SUITE_P(GracefulOrAbrupt, WatchRestartTest, ::testing::Bool());

TEST(WatchTest, JsonPrintsOneObjectPerLineFromAfter) {
  FakeController controller;
  ASSERT_TRUE(controller.ok());
  controller.service().SetEvents(
      {Event(1, "note", "a"), Event(2, "note", "b"), Event(3, "note", "c")});
  WatchRun watch({"--controller=" + controller.address(), "--insecure", "-o", "json", "watch",
                  "--after", "1"});
  ASSERT_TRUE(WaitFor([&] { return Lines(watch.out()).size() == 2; })) << watch.err();
  EXPECT_EQ(watch.Stop(), 0);
  EXPECT_EQ(controller.service().LastRequest<v1::WatchRequest>("Watch").after_seq(), 1u);
  std::vector<std::string> lines = Lines(watch.out());
  ASSERT_EQ(lines.size(), 2u);
  v1::TimelineEvent parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[0], &parsed).ok()) << lines[0];
  EXPECT_EQ(parsed.seq(), 2u);
  EXPECT_THAT(lines[1], HasSubstr("\"incident_id\":\"inc-1\""));
  EXPECT_EQ(watch.err(), "");
}

TEST(WatchTest, ResumesWhereTheControllerSaysWhenItFellBehind) {
  FakeController controller;
  ASSERT_TRUE(controller.ok());
  std::vector<v1::TimelineEvent> events;
  for (uint64_t seq = 1; seq <= 10; ++seq) {
    events.push_back(Event(seq, "note", "event " + std::to_string(seq)));
  }
  controller.service().SetEvents(events);
  controller.service().SetWatchBehindAfter(4);
  WatchRun watch({"--controller=" + controller.address(), "--insecure", "watch", "--after", "0"});
  ASSERT_TRUE(WaitFor([&] { return Lines(watch.out()).size() == 10; })) << watch.err();
  EXPECT_EQ(watch.Stop(), 0);
  std::vector<std::string> lines = Lines(watch.out());
  ASSERT_EQ(lines.size(), 10u) << "each event once";
  for (int i = 0; i < 10; ++i) {
    EXPECT_THAT(lines[i], HasSubstr("  #" + std::to_string(i + 1) + "  inc-1  note"));
  }
  EXPECT_EQ(controller.service().Calls("Watch"), 2);
  EXPECT_EQ(controller.service().LastRequest<v1::WatchRequest>("Watch").after_seq(), 4u);
  EXPECT_THAT(controller.service().LiveOnlyWatches(), ElementsAre(false, false));
  EXPECT_EQ(watch.err(),
            "vigil: fell behind the controller's timeline (stream ended after seq 4); resuming "
            "after seq 4\n");
}

TEST(WatchTest, LiveWatchThatPrintedNothingResumesFromWhereItStarted) {
  auto first = std::make_unique<FakeController>();
  ASSERT_TRUE(first->ok());
  const int port = first->port();
  first->service().SetEvents({Event(1, "note", "old"), Event(2, "note", "old")});
  first->service().SetLiveStart(2);
  WatchRun watch({"--controller=127.0.0.1:" + std::to_string(port), "--insecure", "watch"});
  ASSERT_TRUE(WaitFor([&] { return first->service().Calls("Watch") == 1; })) << watch.err();
  absl::SleepFor(absl::Milliseconds(300));  // the start seq reaches the CLI
  EXPECT_THAT(first->service().LiveOnlyWatches(), ElementsAre(true));
  first->Stop();
  first.reset();
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(watch.err(), "lost connection"); }));

  // Two events happened during the outage; the controller's head has moved past them.
  FakeController second(port);
  ASSERT_TRUE(second.ok());
  second.service().SetEvents({Event(1, "note", "old"), Event(2, "note", "old"),
                              Event(3, "note", "during"), Event(4, "note", "during")});
  second.service().SetLiveStart(4);
  ASSERT_TRUE(WaitFor([&] { return Lines(watch.out()).size() == 2; })) << watch.err();
  EXPECT_EQ(watch.Stop(), 0);
  EXPECT_EQ(second.service().LastRequest<v1::WatchRequest>("Watch").after_seq(), 2u);
  EXPECT_THAT(second.service().LiveOnlyWatches(), ElementsAre(false));
  std::vector<std::string> lines = Lines(watch.out());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], HasSubstr("  #3  "));
  EXPECT_THAT(lines[1], HasSubstr("  #4  "));
  EXPECT_THAT(watch.err(), HasSubstr("resuming after seq 2"));
}

TEST(WatchTest, MissingControllerFailsAtStart) {
  const std::string address = "127.0.0.1:" + std::to_string(ClosedPort());
  std::ostringstream out, err;
  EXPECT_EQ(RunCli({"--controller=" + address, "--insecure", "watch"}, out, err), 1);
  EXPECT_THAT(err.str(),
              StartsWith("vigil: cannot reach controller at " + address + ": connection refused"));
  EXPECT_EQ(Lines(err.str()).size(), 1u);
}

TEST(WatchTest, UnimplementedWatchFailsCleanly) {
  FakeController controller;
  ASSERT_TRUE(controller.ok());
  controller.service().SetError("Watch", grpc::Status(grpc::StatusCode::UNIMPLEMENTED, ""));
  std::ostringstream out, err;
  EXPECT_EQ(RunCli({"--controller=" + controller.address(), "--insecure", "watch"}, out, err), 1);
  EXPECT_THAT(err.str(), HasSubstr("does not implement Watch"));
  EXPECT_EQ(Lines(err.str()).size(), 1u);
}

TEST(ParseParamsTest, SplitsOnTheFirstEquals) {
  auto params = ParseParams({"unit=a=b", "x="});
  ASSERT_TRUE(params.ok());
  EXPECT_EQ(params->at("unit"), "a=b");
  EXPECT_EQ(params->at("x"), "");
  EXPECT_FALSE(ParseParams({"=v"}).ok());
  EXPECT_FALSE(ParseParams({"a=1", "a=2"}).ok());
  EXPECT_EQ(ParseParams({"nokey"}).status().message(), "--param 'nokey' is not KEY=VALUE");
}

TEST(OutputTest, Formatters) {
  absl::Time now = absl::FromUnixMillis(kNowMs);
  EXPECT_EQ(FormatPercent(-1), "-");
  EXPECT_EQ(FormatPercent(0), "0%");
  EXPECT_EQ(FormatPercent(0.999), "100%");
  EXPECT_EQ(FormatAgo(0, now), "-");
  EXPECT_EQ(FormatAgo(kNowMs - 2'000, now), "2s ago");
  EXPECT_EQ(FormatAgo(kNowMs + 5'000, now), "0s ago");
  EXPECT_EQ(FormatAgo(kNowMs - 7'200'000, now), "2h ago");
  EXPECT_EQ(FormatAgo(kNowMs - 3 * 86'400'000LL, now), "3d ago");
  EXPECT_EQ(FormatNumber(3), "3");
  EXPECT_EQ(FormatNumber(0.123456), "0.1235");
  EXPECT_EQ(FormatNumber(123456.789), "123456.8");
  EXPECT_EQ(FormatDurationMs(350), "350ms");
  EXPECT_EQ(FormatDurationMs(61'000), "1m1s");
  EXPECT_EQ(FormatTimestamp(kNowMs), "2023-11-14 22:13:20Z");
}

TEST(OutputTest, TableAlignsOnTheWidestCellWithoutTrailingBlanks) {
  Table table({"A", "LONG HEADER", "C"});
  table.AddRow({"wide cell", "x", ""});
  table.AddRow({"é", "multi\nline"});
  std::ostringstream out;
  table.Print(out, "> ");
  EXPECT_EQ(out.str(),
            "> A           LONG HEADER   C\n"
            "> wide cell   x\n"
            "> é           multi\\nline\n");
}

}  // namespace
}  // namespace vigil::cli
