// Incidents end to end on loopback: five API agents and one database agent watch real nginx and
// PostgreSQL; a slow upstream and a pg_sleep holding a lock become one incident with all six
// hosts, the database as probable cause and diagnostics from the right agents. A real
// Alertmanager posts to the webhook and its alert joins the same incident. `vigil watch`
// survives a controller restart, and `vigil audit verify` catches an edited row.
#include <arpa/inet.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/checkpoint_witness.h"
#include "agent/collectors/log_format.h"
#include "common/http/http_client.h"
#include "tests/support/proto_json.h"
#include "tests/support/servers.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::ParseJson;
using testing::RunCommand;
using testing::Subprocess;
using testing::WaitUntil;

constexpr char kRules[] = R"(rules:
  - alert: HighAPILatency
    expr: p95(nginx_request_duration_seconds) > 0.5
    window: 3s
    severity: SEV2
    summary: API p95 latency above 0.5 s
    runbook: high-api-latency
    diagnostics: [nginx_slow_endpoints, top_processes]
  - alert: SlowQueries
    expr: pg_longest_query_seconds > 6
    severity: SEV2
    summary: A query has been running for more than 6 s
    runbook: slow-queries
    diagnostics: [pg_active_queries, pg_lock_waits]
  - alert: BlockedQueries
    expr: pg_blocked_queries > 0
    severity: SEV3
    diagnostics: [pg_lock_waits]
)";

// POSTs JSON with python3 (always installed with the test servers); true on a 2xx answer.
bool PostJson(uint16_t port, const std::string& path, const std::string& body) {
  CommandResult r = RunCommand(
      {"python3", "-c",
       "import sys, urllib.request\n"
       "req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), "
       "headers={'Content-Type': 'application/json'})\n"
       "sys.exit(0 if urllib.request.urlopen(req, timeout=5).status // 100 == 2 else 1)\n",
       absl::StrCat("http://127.0.0.1:", port, path), body});
  return r.exit_code == 0;
}

// POSTs to the controller's webhook with python3; the HTTP status (0 when nothing answered).
int PostWebhook(uint16_t port, const std::string& body, const std::string& token) {
  CommandResult r = RunCommand(
      {"python3", "-c",
       "import sys, urllib.request, urllib.error\n"
       "headers = {'Content-Type': 'application/json'}\n"
       "if sys.argv[3]: headers['Authorization'] = 'Bearer ' + sys.argv[3]\n"
       "req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), headers=headers)\n"
       "try:\n"
       "    print(urllib.request.urlopen(req, timeout=5).status)\n"
       "except urllib.error.HTTPError as e:\n"
       "    print(e.code)\n",
       absl::StrCat("http://127.0.0.1:", port, "/api/v1/alertmanager"), body, token});
  int status = 0;
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(r.stdout_text), &status) ? status : 0;
}

// A real prometheus-alertmanager that sends every alert to the controller's webhook at once,
// with a responder's token as the receiver's credentials.
class Alertmanager {
 public:
  Alertmanager(const testing::TempDir& dir, int webhook_port, const std::string& token)
      : port_(testing::FreeLoopbackPort()) {
    testing::WriteFile(
        dir.File("alertmanager.yml"),
        absl::StrCat("route: {receiver: vigil, group_by: [alertname], group_wait: 0s, "
                     "group_interval: 1s, repeat_interval: 1h}\n"
                     "receivers: [{name: vigil, webhook_configs: [{url: 'http://127.0.0.1:",
                     webhook_port, "/api/v1/alertmanager', send_resolved: true, ",
                     "http_config: {authorization: {type: Bearer, credentials: '", token,
                     "'}}}]}]\n"));
    process_ = std::make_unique<Subprocess>(
        std::vector<std::string>{
            "prometheus-alertmanager", "--config.file=" + dir.File("alertmanager.yml"),
            "--storage.path=" + dir.File("alertmanager"),
            absl::StrCat("--web.listen-address=127.0.0.1:", port_), "--cluster.listen-address="},
        std::map<std::string, std::string>{}, dir.File("alertmanager.log"));
  }
  // Alertmanager's own API, as Prometheus would call it.
  bool Fire(const std::string& labels_json, const std::string& summary) {
    return PostJson(port_, "/api/v2/alerts",
                    absl::StrCat("[{\"labels\": ", labels_json,
                                 ", \"annotations\": {\"summary\": \"", summary, "\"}}]"));
  }
  bool Ready() { return testing::HttpGet(port_, "/-/ready", absl::Seconds(2)) == 200; }
  std::string Output() const { return process_->Output(); }

 private:
  uint16_t port_;
  std::unique_ptr<Subprocess> process_;
};

// Clients requesting one path in a loop until stopped (or destroyed, when an assertion fails).
class Traffic {
 public:
  Traffic(uint16_t port, std::string path, int clients) {
    for (int c = 0; c < clients; ++c) {
      threads_.emplace_back([this, port, path] {
        while (running_) {
          testing::HttpGet(port, path);
        }
      });
    }
  }
  ~Traffic() { Stop(); }
  void Stop() {
    running_ = false;
    for (std::thread& t : threads_) {
      if (t.joinable()) {
        t.join();
      }
    }
  }

 private:
  std::atomic<bool> running_{true};
  std::vector<std::thread> threads_;
};

class IncidentsTest : public ::testing::Test {
 protected:
  IncidentsTest()
      : grpc_port_(testing::FreeLoopbackPort()),
        http_port_(testing::FreeLoopbackPort()),
        address_(absl::StrCat("127.0.0.1:", grpc_port_)) {
    testing::WriteFile(dir_.File("rules.yaml"), kRules);
  }

  void StartController() {
    if (token_.empty()) {
      token_ = testing::AddVigilUser(db(), "tester", "admin");
      webhook_token_ = testing::AddVigilUser(db(), "alertmanager", "responder");
    }
    std::vector<std::string> argv = {BinaryPath("vigil-controller"),
                                     "--listen=" + address_,
                                     "--db=" + db(),
                                     "--insecure",
                                     absl::StrCat("--http-listen=127.0.0.1:", http_port_),
                                     "--rules=" + dir_.File("rules.yaml")};
    argv.insert(argv.end(), extra_flags_.begin(), extra_flags_.end());
    controller_ = std::make_unique<Subprocess>(
        argv, std::map<std::string, std::string>{},
        dir_.File(absl::StrCat("controller-", ++controllers_, ".log")));
    ASSERT_TRUE(WaitUntil([&] { return Cli({"agents"}).exit_code == 0; }, absl::Seconds(10)))
        << controller_->Output();
  }

  std::unique_ptr<Subprocess> StartAgent(const std::string& id, const std::string& config) {
    testing::WriteFile(dir_.File(id + ".yaml"), config);
    return std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-agent"), "--controller=" + address_,
                                 "--config=" + dir_.File(id + ".yaml"), "--insecure",
                                 "--interval=1s"},
        std::map<std::string, std::string>{}, dir_.File(id + ".log"));
  }

  CommandResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {BinaryPath("vigil"), "--controller=" + address_, "--insecure",
                               "--token=" + token_});
    return RunCommand(args);
  }

  std::vector<v1::Incident> Incidents() {
    v1::ListIncidentsResponse r;
    CommandResult c = Cli({"incidents", "--state=all", "-o", "json"});
    if (c.exit_code != 0 || !ParseJson(c.stdout_text, &r)) {
      return {};
    }
    return {r.incidents().begin(), r.incidents().end()};
  }

  v1::GetIncidentResponse Show(const std::string& id) {
    v1::GetIncidentResponse r;
    CommandResult c = Cli({"incident", "show", id, "-o", "json"});
    EXPECT_EQ(c.exit_code, 0) << c.output;
    EXPECT_TRUE(ParseJson(c.stdout_text, &r)) << c.stdout_text;
    return r;
  }

  std::string db() const { return dir_.File("vigil.db"); }

  testing::TempDir dir_;
  const uint16_t grpc_port_;
  const uint16_t http_port_;
  const std::string address_;
  std::unique_ptr<Subprocess> controller_;
  std::string token_;
  std::string webhook_token_;             // a responder's, for Alertmanager
  std::vector<std::string> extra_flags_;  // for the controller
  int controllers_ = 0;
};

TEST_F(IncidentsTest, SlowApiAndLockedDatabaseBecomeOneIncidentWithTheDatabaseAsCause) {
  testing::HttpUpstream upstream;
  upstream.SetRoute("/api", absl::Milliseconds(10), 200);
  testing::NginxServer nginx(dir_.path(), upstream.port());
  testing::PostgresServer postgres(dir_.path());
  ASSERT_TRUE(nginx.ok() && postgres.ok());
  StartController();
  Alertmanager alertmanager(dir_, http_port_, webhook_token_);

  std::vector<std::unique_ptr<Subprocess>> agents;
  for (int i = 1; i <= 5; ++i) {
    // All five tail the same nginx: what matters is five hosts seeing the same slow API.
    agents.push_back(
        StartAgent(absl::StrCat("api-", i),
                   absl::StrCat("id: api-", i,
                                "\nlabels: {role: api, service: rag-api, depends_on: postgres}\n"
                                "collectors:\n  host: {}\n  nginx: {access_log: '",
                                nginx.access_log(), "', log_format: '",
                                agent::LogFormat::kTimedCombined, " $upstream_response_time'}\n",
                                "spool_dir: ", dir_.File(absl::StrCat("api-", i, ".spool")),
                                "\n")));
  }
  agents.push_back(
      StartAgent("db-1", absl::StrCat("id: db-1\nlabels: {role: postgres, service: postgres}\n"
                                      "collectors:\n  host: {}\n  postgres: {dsn: '",
                                      postgres.Dsn("vigil"), "'}\nspool_dir: ",
                                      dir_.File("db-1.spool"), "\n")));
  ASSERT_TRUE(WaitUntil(
      [&] {
        v1::ListAgentsResponse r;
        CommandResult c = Cli({"agents", "-o", "json"});
        int connected = 0;
        if (c.exit_code == 0 && ParseJson(c.stdout_text, &r)) {
          for (const auto& a : r.agents()) {
            connected += a.state() == v1::CONNECTED;
          }
        }
        return connected == 6;
      },
      absl::Seconds(15)));
  ASSERT_TRUE(WaitUntil([&] { return alertmanager.Ready(); }, absl::Seconds(15)))
      << alertmanager.Output();
  Subprocess watch({BinaryPath("vigil"), "--controller=" + address_, "--insecure",
                    "--token=" + token_, "watch", "-o", "json"},
                   std::map<std::string, std::string>{}, dir_.File("watch.log"));

  // Healthy traffic first: no incident.
  Traffic traffic(nginx.port(), "/api/search?q=1", 4);
  absl::SleepFor(absl::Seconds(3));
  EXPECT_TRUE(Incidents().empty());

  // The faults: a transaction holding a row lock in pg_sleep, a query waiting on it, and the
  // API's upstream turning slow.
  auto holder = postgres.Background(
      "BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 1; SELECT pg_sleep(45); COMMIT;",
      "app");
  // The waiter must queue behind the lock, so wait until the holder sleeps (psql may take a
  // while to start on a loaded machine).
  ASSERT_TRUE(WaitUntil(
      [&] {
        return absl::StrContains(
            postgres.Psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(45)%' "
                          "AND state = 'active' AND pid <> pg_backend_pid()")
                .output,
            "1");
      },
      absl::Seconds(10)));
  auto waiter =
      postgres.Background("UPDATE accounts SET balance = balance + 1 WHERE id = 1", "app");
  // The diagnostics asked when SlowQueries fires (6 s into the holder) must see the waiter: make
  // sure it queues well before that, however slowly psql starts here.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return absl::StrContains(
            postgres.Psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                .output,
            "1");
      },
      absl::Seconds(5)));
  upstream.SetRoute("/api/search", absl::Milliseconds(1200), 200);

  std::vector<v1::Incident> incidents;
  const bool all_joined = WaitUntil(
      [&] {
        incidents = Incidents();
        return incidents.size() == 1 && incidents[0].agents_size() == 6;
      },
      absl::Seconds(25), absl::Milliseconds(500));
  ASSERT_TRUE(all_joined) << (incidents.empty() ? "no incident" : incidents[0].DebugString())
                          << controller_->Output();
  const std::string id = incidents[0].id();
  std::set<std::string> hosts(incidents[0].agents().begin(), incidents[0].agents().end());
  EXPECT_EQ(hosts, (std::set<std::string>{"api-1", "api-2", "api-3", "api-4", "api-5", "db-1"}));
  EXPECT_EQ(incidents[0].severity(), v1::SEV2);
  EXPECT_TRUE(absl::StartsWith(incidents[0].probable_cause(), "db-1/"))
      << incidents[0].probable_cause() << ": " << incidents[0].probable_cause_reason();
  EXPECT_TRUE(absl::StrContains(incidents[0].probable_cause_reason(), "depended on by 5"))
      << incidents[0].probable_cause_reason();

  // Alertmanager's alert on the database joins the same incident.
  ASSERT_TRUE(alertmanager.Fire(
      R"({"alertname": "PostgresReplicationLag", "service": "postgres", "instance": "db-1:9187", "severity": "warning"})",
      "replica 30 s behind"));
  ASSERT_TRUE(WaitUntil(
      [&] {
        incidents = Incidents();
        return incidents.size() == 1 &&
               absl::StrContains(absl::StrJoin(incidents[0].alert_rules(), ","),
                                 "PostgresReplicationLag");
      },
      absl::Seconds(15)))
      << (incidents.empty() ? "" : incidents[0].DebugString()) << alertmanager.Output()
      << controller_->Output();

  // Diagnostics from the right agents: lock waits from the database, slow endpoints from the API.
  v1::GetIncidentResponse shown;
  ASSERT_TRUE(WaitUntil(
      [&] {
        shown = Show(id);
        bool db_locks = false;
        bool api_endpoints = false;
        for (const auto& e : shown.timeline()) {
          if (e.kind() != "diagnostics") continue;
          db_locks = db_locks || (e.actor() == "db-1" &&
                                  absl::StrContains(e.summary(), "pg_lock_waits (1 rows)") &&
                                  absl::StrContains(e.details_json(), "pg_sleep"));
          api_endpoints = api_endpoints || (absl::StartsWith(e.actor(), "api-") &&
                                            absl::StrContains(e.details_json(), "/api/search"));
        }
        return db_locks && api_endpoints;
      },
      absl::Seconds(15)))
      << shown.DebugString();
  for (const auto& e : shown.timeline()) {
    if (e.kind() == "diagnostics") {
      EXPECT_TRUE(e.actor() == "db-1" || absl::StartsWith(e.actor(), "api-")) << e.actor();
      if (e.actor() == "db-1") {
        EXPECT_FALSE(absl::StrContains(e.summary(), "nginx_slow_endpoints")) << e.summary();
      }
    }
  }

  // The commander's side: acknowledge, a note, the checklist, resolve; all on the timeline.
  EXPECT_EQ(Cli({"incident", "ack", id}).exit_code, 0);
  CommandResult again = Cli({"incident", "ack", id});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(again.output, "acknowledged")) << again.output;
  EXPECT_EQ(Cli({"incident", "note", id, "lock held by a stuck batch job"}).exit_code, 0);
  CommandResult bad_item = Cli({"incident", "check", id, "coffee_made"});
  EXPECT_EQ(bad_item.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(bad_item.output, "root_cause_identified")) << bad_item.output;
  EXPECT_EQ(Cli({"incident", "check", id, "root_cause_identified"}).exit_code, 0);

  traffic.Stop();
  holder->Kill();
  waiter->Kill();

  shown = Show(id);
  std::set<std::string> kinds;
  for (const auto& e : shown.timeline()) {
    kinds.insert(e.kind());
  }
  for (const char* kind : {"incident_opened", "alert_fired", "host_joined", "diagnostics",
                           "acknowledged", "note", "checklist"}) {
    EXPECT_TRUE(kinds.contains(kind)) << kind;
  }
  EXPECT_EQ(shown.incident().acknowledged_by(), "tester");
  CommandResult table = Cli({"incident", "show", id});
  EXPECT_TRUE(absl::StrContains(table.stdout_text, "db-1")) << table.stdout_text;
  // The export holds the agents' tables as collected, and the response so far.
  CommandResult exported = Cli({"audit", "export", id, "--format=markdown"});
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  const std::string& report = exported.stdout_text;
  EXPECT_TRUE(absl::StrContains(report, "### pg\\_lock\\_waits from db-1")) << report;
  EXPECT_TRUE(absl::StrContains(report, "pg\\_sleep")) << report;
  EXPECT_TRUE(absl::StrContains(report, "/api/search")) << report;
  EXPECT_FALSE(absl::StrContains(report, "| acknowledge | not yet |")) << report;
  EXPECT_TRUE(absl::StrContains(report, "| resolve | not yet | not yet | - |")) << report;
  EXPECT_TRUE(absl::StrContains(report, "- [x] root\\_cause\\_identified (tester, ")) << report;

  // The live stream saw the incident open.
  ASSERT_TRUE(WaitUntil([&] { return absl::StrContains(watch.Output(), "\"kind\":\"note\""); },
                        absl::Seconds(5)))
      << watch.Output();
  EXPECT_TRUE(absl::StrContains(watch.Output(), "\"kind\":\"incident_opened\""));

  // Alerts as the CLI lists them, and the controller's own health for Prometheus.
  CommandResult alerts = Cli({"alerts"});
  EXPECT_EQ(alerts.exit_code, 0) << alerts.output;
  EXPECT_TRUE(absl::StrContains(alerts.stdout_text, "HighAPILatency")) << alerts.stdout_text;
  std::string metrics_page;
  ASSERT_EQ(testing::HttpGet(http_port_, "/metrics", absl::Seconds(5), &metrics_page), 200);
  EXPECT_TRUE(absl::StrContains(metrics_page, "vigil_agents_connected 6")) << metrics_page;
  EXPECT_TRUE(absl::StrContains(metrics_page, "vigil_incidents_active 1")) << metrics_page;
  EXPECT_TRUE(absl::StrContains(metrics_page, "vigil_store_commit_seconds_count")) << metrics_page;
  EXPECT_TRUE(absl::StrContains(metrics_page, "\nvigil_store_checkpoint_failures_total 0\n"))
      << metrics_page;
  EXPECT_TRUE(absl::StrContains(metrics_page, "\nvigil_store_writer_waits_total 0\n"))
      << metrics_page;
  EXPECT_TRUE(absl::StrContains(metrics_page, "\nvigil_store_log_bytes ")) << metrics_page;

  // The database's agent dies while its alerts fire: they turn stale on the timeline.
  agents.back()->Kill();
  ASSERT_TRUE(WaitUntil(
      [&] {
        const v1::GetIncidentResponse now = Show(id);
        for (const auto& e : now.timeline()) {
          if (e.kind() == "alert_stale" && absl::StrContains(e.summary(), "db-1") &&
              absl::StrContains(e.summary(), "its agent disconnected")) {
            return true;
          }
        }
        return false;
      },
      absl::Seconds(10)));

  CommandResult verify = Cli({"audit", "verify"});
  EXPECT_EQ(verify.exit_code, 0) << verify.stdout_text << verify.output;
}

TEST_F(IncidentsTest, WebhookWantsAResponderAndBoundsWhatItTakes) {
  StartController();
  const std::string viewer = testing::AddVigilUser(db(), "victor", "viewer");
  const std::string alert = absl::StrCat(
      R"({"version":"4","status":"firing","alerts":[{"status":"firing",)",
      R"("labels":{"alertname":"Forged","severity":"critical","instance":"db-1:9100"},)",
      R"("startsAt":"2024-03-01T00:00:00Z"}]})");
  EXPECT_EQ(PostWebhook(http_port_, alert, ""), 401);
  EXPECT_EQ(PostWebhook(http_port_, alert, "vgt_not_a_token"), 401);
  EXPECT_EQ(PostWebhook(http_port_, alert, viewer), 403);
  // 100,000 nested arrays are refused at once, and the controller goes on.
  absl::Time start = absl::Now();
  EXPECT_EQ(PostWebhook(http_port_, std::string(100000, '['), webhook_token_), 400);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(Incidents().empty());
  std::string metrics;
  EXPECT_EQ(testing::HttpGet(http_port_, "/metrics", absl::Seconds(5), &metrics), 200);
  EXPECT_NE(metrics.find("vigil_webhook_requests_refused_total{reason=\"unauthorized\"} 2"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("vigil_webhook_requests_refused_total{reason=\"bad_request\"} 1"),
            std::string::npos)
      << metrics;

  // The same notification with a responder's token opens the incident.
  EXPECT_EQ(PostWebhook(http_port_, alert, webhook_token_), 200);
  ASSERT_TRUE(WaitUntil([&] { return !Incidents().empty(); }, absl::Seconds(5)))
      << controller_->Output();
  EXPECT_EQ(Incidents()[0].severity(), v1::SEV1);

  // 300 clients that never finish a request, and one trickling a large body, do not starve
  // /metrics nor hold up SIGTERM.
  std::vector<int> clients;
  for (int i = 0; i < 300; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(http_port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << i;
    const std::string start =
        i == 0 ? "POST /api/v1/alertmanager HTTP/1.1\r\nContent-Length: 4000000\r\n\r\n[[["
               : "GET /metrics HTTP/1.1\r\nX-Slow: ";
    ASSERT_GT(send(fd, start.data(), start.size(), MSG_NOSIGNAL), 0);
    clients.push_back(fd);
  }
  metrics.clear();
  EXPECT_EQ(testing::HttpGet(http_port_, "/metrics", absl::Seconds(2), &metrics), 200);
  EXPECT_NE(metrics.find("vigil_http_connections_accepted_total"), std::string::npos) << metrics;
  absl::Time stop_start = absl::Now();
  EXPECT_EQ(controller_->Stop(absl::Seconds(10)), 0) << controller_->Output();
  EXPECT_LT(absl::Now() - stop_start, absl::Seconds(5));
  for (int fd : clients) {
    close(fd);
  }
}

TEST_F(IncidentsTest, WebhookOverTlsTakesAClientCertificateOfAResponder) {
  const std::string tls = dir_.File("tls");
  CommandResult ca = RunCommand({testing::SourcePath("scripts/dev-ca.sh"), tls, "--user",
                                 "alertmanager", "--user", "victor"});
  ASSERT_EQ(ca.exit_code, 0) << ca.output;
  extra_flags_ = {"--http-tls-cert=" + tls + "/controller.pem",
                  "--http-tls-key=" + tls + "/controller.key", "--http-tls-ca=" + tls + "/ca.pem"};
  StartController();  // adds the responder "alertmanager"
  testing::AddVigilUser(db(), "victor", "viewer");
  const std::string url = absl::StrCat("https://127.0.0.1:", http_port_, "/api/v1/alertmanager");
  const std::string alert = absl::StrCat(
      R"({"version":"4","status":"firing","alerts":[{"status":"firing",)",
      R"("labels":{"alertname":"ReplicaLag","severity":"warning","instance":"db-2:9187"},)",
      R"("startsAt":"2024-03-01T00:00:00Z"}]})");
  http::HttpClientOptions options;
  options.tls_ca_file = tls + "/ca.pem";

  absl::StatusOr<http::HttpClientResponse> r =
      http::HttpPost(url, alert, "application/json", options);
  ASSERT_TRUE(r.ok()) << r.status() << controller_->Output();
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->headers["www-authenticate"].rfind("Bearer", 0), 0u);
  options.tls_cert_file = tls + "/user-victor.pem";
  options.tls_key_file = tls + "/user-victor.key";
  r = http::HttpPost(url, alert, "application/json", options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 403);
  EXPECT_TRUE(Incidents().empty());

  options.tls_cert_file = tls + "/user-alertmanager.pem";
  options.tls_key_file = tls + "/user-alertmanager.key";
  r = http::HttpPost(url, alert, "application/json", options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200) << r->body;
  ASSERT_TRUE(WaitUntil([&] { return !Incidents().empty(); }, absl::Seconds(5)))
      << controller_->Output();
  // /metrics is served over TLS too; plain HTTP on the port gets no answer.
  r = http::HttpGet(absl::StrCat("https://127.0.0.1:", http_port_, "/metrics"), options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(testing::HttpGet(http_port_, "/metrics", absl::Seconds(2)), -1);
}

TEST_F(IncidentsTest, BadRuleFilesAreNamedByFileAndLine) {
  testing::WriteFile(dir_.File("bad.yaml"), R"(rules:
  - alert: Typo
    expr: host_cpu_usage > 0.9
  - alert: Typo
    expr: host_load1 > 4
    for: soon
  - alert: LongRate
    expr: sum(rate(nginx_requests_per_second[1h])) < 100
)");
  CommandResult check =
      RunCommand({BinaryPath("vigil-controller"), "check-rules", dir_.File("bad.yaml")});
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(check.output,
                                "bad.yaml:3: rule Typo: expr: unknown metric 'host_cpu_usage'"))
      << check.output;
  EXPECT_TRUE(absl::StrContains(check.output, "bad.yaml:6: rule Typo:")) << check.output;
  // A range beyond what the controller keeps (5m).
  EXPECT_TRUE(absl::StrContains(check.output,
                                "bad.yaml:8: rule LongRate: expr: range '1h' of "
                                "rate(nginx_requests_per_second[1h]) is above 5m"))
      << check.output;
  CommandResult good =
      RunCommand({BinaryPath("vigil-controller"), "check-rules", dir_.File("rules.yaml")});
  EXPECT_EQ(good.exit_code, 0) << good.output;
  EXPECT_TRUE(absl::StrContains(good.output, "3 rule(s), OK")) << good.output;

  // A controller given the bad file refuses to start, and says why.
  CommandResult start =
      RunCommand({BinaryPath("vigil-controller"), "--listen=" + address_, "--db=" + db(),
                  "--insecure", "--http-listen=off", "--rules=" + dir_.File("bad.yaml")},
                 absl::Seconds(10));
  EXPECT_EQ(start.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(start.output, "unknown metric 'host_cpu_usage'")) << start.output;
}

TEST_F(IncidentsTest, WatchSurvivesRestartAndAuditNamesTheEditedEvent) {
  StartController();
  Alertmanager alertmanager(dir_, http_port_, webhook_token_);
  ASSERT_TRUE(WaitUntil([&] { return alertmanager.Ready(); }, absl::Seconds(15)))
      << alertmanager.Output();
  Subprocess watch({BinaryPath("vigil"), "--controller=" + address_, "--insecure",
                    "--token=" + token_, "watch", "-o", "json"},
                   std::map<std::string, std::string>{}, dir_.File("watch.log"));
  absl::SleepFor(absl::Milliseconds(500));

  ASSERT_TRUE(alertmanager.Fire(
      R"({"alertname": "DiskFull", "instance": "files-1:9100", "severity": "critical"})",
      "disk 99 %"));
  std::vector<v1::Incident> incidents;
  ASSERT_TRUE(WaitUntil(
      [&] {
        incidents = Incidents();
        return incidents.size() == 1;
      },
      absl::Seconds(15)))
      << alertmanager.Output() << controller_->Output();
  const std::string id = incidents[0].id();
  EXPECT_EQ(incidents[0].severity(), v1::SEV1);
  EXPECT_EQ(incidents[0].probable_cause(), "files-1/DiskFull");
  ASSERT_TRUE(
      WaitUntil([&] { return absl::StrContains(watch.Output(), "\"kind\":\"incident_opened\""); },
                absl::Seconds(5)))
      << watch.Output();

  // The controller goes away and comes back; the same watch carries on.
  controller_->Stop();
  StartController();
  ASSERT_EQ(Cli({"incident", "note", id, "after the restart"}).exit_code, 0);
  ASSERT_TRUE(WaitUntil([&] { return absl::StrContains(watch.Output(), "after the restart"); },
                        absl::Seconds(15)))
      << watch.Output();

  // The report holds the whole story.
  CommandResult markdown = Cli({"audit", "export", id, "--format=markdown"});
  ASSERT_EQ(markdown.exit_code, 0) << markdown.output;
  EXPECT_TRUE(absl::StrContains(markdown.stdout_text, "# " + id)) << markdown.stdout_text;
  EXPECT_TRUE(absl::StrContains(markdown.stdout_text, "after the restart"));
  EXPECT_TRUE(absl::StrContains(markdown.stdout_text, "The audit chain verifies"));
  CommandResult json = Cli({"audit", "export", id, "--format=json"});
  ASSERT_EQ(json.exit_code, 0) << json.output;
  EXPECT_TRUE(absl::StrContains(json.stdout_text, "\"incident_opened\""));

  CommandResult verify = Cli({"audit", "verify"});
  ASSERT_EQ(verify.exit_code, 0) << verify.stdout_text << verify.output;

  // Someone edits one row behind the controller's back.
  CommandResult edit = RunCommand(
      {"sqlite3", db(), "UPDATE timeline SET summary = 'nothing happened' WHERE seq = 2;"});
  ASSERT_EQ(edit.exit_code, 0) << edit.output;
  // The check is incremental from the newest checkpoint a full check verified: an edit before
  // it is the full check's to find, which re-hashes from event 1 and names the row.
  v1::VerifyAuditResponse incremental;
  verify = Cli({"audit", "verify", "-o", "json"});
  ASSERT_TRUE(ParseJson(verify.stdout_text, &incremental)) << verify.stdout_text;
  EXPECT_GE(incremental.verified_from_seq(), 2u);
  if (incremental.verified_from_seq() > 2) {
    EXPECT_TRUE(incremental.ok()) << incremental.problem();
  }
  verify = Cli({"audit", "verify", "--full"});
  EXPECT_EQ(verify.exit_code, 1) << verify.stdout_text;
  EXPECT_TRUE(absl::StrContains(verify.output, "2")) << verify.stdout_text << verify.output;
  v1::VerifyAuditResponse response;
  CommandResult verify_json = Cli({"audit", "verify", "--full", "-o", "json"});
  ASSERT_TRUE(ParseJson(verify_json.stdout_text, &response)) << verify_json.stdout_text;
  EXPECT_FALSE(response.ok());
  EXPECT_EQ(response.first_bad_seq(), 2u);
}

// The audit trail as an auditor and an attacker see it: a bundle that verifies with no
// controller (the CLI's verifier and an independent one written from the README), a tampered
// bundle that does not, and a database put back to an older copy that the checkpoint log and
// the CLI (witnesses) expose, holding the timeline until an admin accepts it with a reason.
TEST_F(IncidentsTest, AuditBundlesVerifyOfflineAndARolledBackDatabaseIsCaught) {
  extra_flags_ = {"--checkpoint-log=" + dir_.File("checkpoints.log"), "--checkpoint-every=1s"};
  StartController();
  Alertmanager alertmanager(dir_, http_port_, webhook_token_);
  ASSERT_TRUE(WaitUntil([&] { return alertmanager.Ready(); }, absl::Seconds(15)))
      << alertmanager.Output();
  ASSERT_TRUE(alertmanager.Fire(R"({"alertname": "DiskFull", "instance": "files-1:9100"})",
                                "disk 99 %"));
  std::vector<v1::Incident> incidents;
  ASSERT_TRUE(WaitUntil(
      [&] {
        incidents = Incidents();
        return incidents.size() == 1;
      },
      absl::Seconds(15)))
      << alertmanager.Output() << controller_->Output();
  const std::string id = incidents[0].id();
  ASSERT_EQ(Cli({"incident", "note", id, "first look"}).exit_code, 0);

  // Within a second the head is signed; the CLI checks that signature itself and keeps it.
  CommandResult verify;
  EXPECT_TRUE(WaitUntil(
      [&] {
        verify = Cli({"audit", "verify"});
        return verify.exit_code == 0 &&
               absl::StrContains(verify.stdout_text, "signed by audit key");
      },
      absl::Seconds(5)))
      << verify.output;

  // A bundle of the incident, checked with no controller by two verifiers.
  const std::string bundle = dir_.File("bundle.json");
  const std::string public_key = dir_.File("controller-audit.pub");
  CommandResult exported = Cli({"audit", "export", id, "--bundle", "--out", bundle});
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  CommandResult offline = RunCommand({BinaryPath("vigil"), "audit", "verify", "--bundle", bundle,
                                      "--public-key", public_key});
  EXPECT_EQ(offline.exit_code, 0) << offline.output;
  EXPECT_TRUE(absl::StrContains(offline.stdout_text, "bundle OK")) << offline.stdout_text;
  EXPECT_TRUE(absl::StrContains(offline.stdout_text, "incident " + id)) << offline.stdout_text;
  const std::string independent = testing::SourcePath("tests/integration/tools/verify_bundle.py");
  CommandResult third_party = RunCommand({"python3", independent, bundle, public_key});
  EXPECT_EQ(third_party.exit_code, 0) << third_party.output;
  EXPECT_TRUE(absl::StartsWith(third_party.stdout_text, "OK ")) << third_party.output;

  std::string tampered = testing::ReadFileOrEmpty(bundle);
  const size_t at = tampered.find("first look");
  ASSERT_NE(at, std::string::npos);
  tampered.replace(at, 10, "final look");
  testing::WriteFile(dir_.File("tampered.json"), tampered);
  offline = RunCommand({BinaryPath("vigil"), "audit", "verify", "--bundle",
                        dir_.File("tampered.json"), "--public-key", public_key});
  EXPECT_EQ(offline.exit_code, 1) << offline.output;
  EXPECT_TRUE(absl::StrContains(offline.stdout_text, "was changed")) << offline.stdout_text;
  third_party = RunCommand({"python3", independent, dir_.File("tampered.json"), public_key});
  EXPECT_EQ(third_party.exit_code, 1) << third_party.output;
  // Without the key apart from the bundle there is nothing to check against.
  EXPECT_EQ(RunCommand({BinaryPath("vigil"), "audit", "verify", "--bundle", bundle}).exit_code, 2);

  // A copy of the database is kept; the timeline goes on and is witnessed.
  controller_->Stop();
  std::filesystem::copy_file(db(), dir_.File("old.db"));
  StartController();
  ASSERT_EQ(Cli({"incident", "note", id, "second look"}).exit_code, 0);
  ASSERT_EQ(Cli({"audit", "verify"}).exit_code, 0);
  controller_->Stop();

  // Someone puts the old copy back: it is a consistent chain of its own.
  std::filesystem::copy_file(dir_.File("old.db"), db(),
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::remove(db() + "-wal");
  std::filesystem::remove(db() + "-shm");
  StartController();
  EXPECT_TRUE(WaitUntil(
      [&] { return absl::StrContains(controller_->Output(), "rollback detected"); },
      absl::Seconds(5)))
      << controller_->Output();
  verify = Cli({"audit", "verify"});
  EXPECT_EQ(verify.exit_code, 1) << verify.output;
  EXPECT_TRUE(absl::StrContains(verify.stdout_text, "rollback")) << verify.stdout_text;
  CommandResult refused = Cli({"incident", "note", id, "during the hold"});
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  EXPECT_TRUE(absl::StrContains(refused.output, "accept-rollback")) << refused.output;

  CommandResult accepted =
      RunCommand({BinaryPath("vigil-controller"), "audit", "accept-rollback", "--db", db(),
                  "--reason", "restored from the nightly copy after a disk failure"});
  ASSERT_EQ(accepted.exit_code, 0) << accepted.output;
  EXPECT_TRUE(WaitUntil([&] { return Cli({"incident", "note", id, "after"}).exit_code == 0; },
                        absl::Seconds(5)));
  // The chain verifies again; the CLI's older witness is superseded by the acceptance, which
  // it names.
  verify = Cli({"audit", "verify", "--full"});
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_TRUE(absl::StrContains(verify.output, "rollback was accepted")) << verify.output;
}

// Agents are witnesses: each keeps the newest checkpoint it was sent beside its journal and
// reports it when it connects, so a controller started on an older copy of its database hears
// of it from the first agent that comes back.
TEST_F(IncidentsTest, AgentsWitnessTheAuditChainAcrossARollback) {
  extra_flags_ = {"--checkpoint-every=1s"};
  StartController();
  const std::string config = absl::StrCat("id: web-1\nlabels: {role: api}\ncollectors:\n  host: {}\n",
                                          "journal: ", dir_.File("web-1.journal"), "\n",
                                          "spool_dir: ", dir_.File("web-1.spool"), "\n");
  std::unique_ptr<Subprocess> agent = StartAgent("web-1", config);
  ASSERT_TRUE(WaitUntil([&] { return absl::StrContains(controller_->Output(), "web-1"); },
                        absl::Seconds(10)))
      << controller_->Output();
  controller_->Stop();
  std::filesystem::copy_file(db(), dir_.File("old.db"));
  StartController();
  // The timeline moves on (an incident), is signed, and the agent is sent the checkpoint.
  Alertmanager alertmanager(dir_, http_port_, webhook_token_);
  ASSERT_TRUE(WaitUntil([&] { return alertmanager.Ready(); }, absl::Seconds(15)))
      << alertmanager.Output();
  ASSERT_TRUE(alertmanager.Fire(R"({"alertname": "DiskFull", "instance": "files-1:9100"})",
                                "disk 99 %"));
  ASSERT_TRUE(WaitUntil([&] { return Incidents().size() == 1; }, absl::Seconds(15)))
      << controller_->Output();
  const std::string witness = dir_.File("web-1.checkpoint");
  uint64_t held = 0;
  v1::VerifyAuditResponse before;
  ASSERT_TRUE(WaitUntil(
      [&] {
        CommandResult v = Cli({"audit", "verify", "-o", "json"});
        if (!ParseJson(v.stdout_text, &before) || !before.has_latest_checkpoint()) return false;
        held = before.latest_checkpoint().seq();
        if (held != before.head_seq()) return false;
        // The broadcast reached the agent's disk: its witness holds that checkpoint.
        auto kept = agent::DecodeCheckpointFile(testing::ReadFileOrEmpty(witness), witness);
        return kept.ok() && kept->seq() == held;
      },
      absl::Seconds(10)))
      << controller_->Output() << agent->Output();
  controller_->Stop();
  std::filesystem::copy_file(dir_.File("old.db"), db(),
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::remove(db() + "-wal");
  std::filesystem::remove(db() + "-shm");
  StartController();
  EXPECT_TRUE(WaitUntil(
      [&] { return absl::StrContains(controller_->Output(), "detected: agent web-1"); },
      absl::Seconds(15)))
      << controller_->Output() << agent->Output();
  v1::VerifyAuditResponse after;
  CommandResult v = Cli({"audit", "verify", "-o", "json"});
  ASSERT_TRUE(ParseJson(v.stdout_text, &after)) << v.output;
  EXPECT_FALSE(after.ok());
  EXPECT_TRUE(after.rollback_detected());
}

}  // namespace
}  // namespace vigil
