// Notifications end to end on loopback: the real controller with a real Alertmanager (the Debian
// package) and a local HTTP receiver that checks every request's HMAC signature and counts
// deliveries by idempotency key. An incident that opens shows in `amtool alert query` and stops
// being active there once resolved; Alertmanager routing Vigil's own alert back to the
// controller's webhook opens no second incident, and neither does a real Prometheus alert about
// the controller (its scrape job) routed there; an Alertmanager and receiver outage of a few
// seconds, with a controller restart inside it, and an Alertmanager outage of a whole minute while
// incidents open and resolve, lose nothing and duplicate nothing.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/http/http_client.h"
#include "common/http/http_server.h"
#include "tests/support/process.h"
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

constexpr char kSecret[] = "shared-s3cret";

// Computed here with OpenSSL, not with the controller's code: the receiver's side of the scheme.
std::string Hmac(absl::string_view key, absl::string_view message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &size);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(mac), size));
}

// A webhook receiver: checks X-Vigil-Signature over "TIMESTAMP.BODY", refuses bad ones (401),
// answers 503 while "down", and counts accepted deliveries by Idempotency-Key.
class Receiver {
 public:
  Receiver() : server_(http::HttpServer::Options{}) {
    server_.Handle("POST", "/hook", [this](const http::HttpRequest& request) {
      absl::MutexLock lock(&mu_);
      const std::string& ts = request.Header("x-vigil-timestamp");
      const std::string& signature = request.Header("x-vigil-signature");
      if (signature != "sha256=" + Hmac(kSecret, absl::StrCat(ts, ".", request.body))) {
        ++bad_signatures_;
        return http::TextResponse(401, "bad signature");
      }
      if (down_) {
        ++refused_;
        return http::TextResponse(503, "down for maintenance");
      }
      const std::string& key = request.Header("idempotency-key");
      ++by_key_[key];
      bodies_.push_back(request.body);
      return http::TextResponse(200, "ok");
    });
    EXPECT_TRUE(server_.Start("127.0.0.1:0").ok());
  }
  int port() const { return server_.port(); }
  void SetDown(bool down) {
    absl::MutexLock lock(&mu_);
    down_ = down;
  }
  std::map<std::string, int> by_key() const {
    absl::MutexLock lock(&mu_);
    return by_key_;
  }
  // Accepted bodies whose "kind" is `kind`, for incident `id` ("" any).
  int Count(const std::string& kind, const std::string& id = "") const {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const std::string& body : bodies_) {
      n += absl::StrContains(body, absl::StrCat("\"kind\":\"", kind, "\"")) &&
                   (id.empty() ||
                    absl::StrContains(body, absl::StrCat("\"incident_id\":\"", id, "\"")))
               ? 1
               : 0;
    }
    return n;
  }
  int bad_signatures() const {
    absl::MutexLock lock(&mu_);
    return bad_signatures_;
  }
  int refused() const {
    absl::MutexLock lock(&mu_);
    return refused_;
  }

 private:
  http::HttpServer server_;
  mutable absl::Mutex mu_;
  bool down_ = false;
  std::map<std::string, int> by_key_;
  std::vector<std::string> bodies_;
  int bad_signatures_ = 0;
  int refused_ = 0;
};

// A real prometheus-alertmanager on a fixed loopback port (kept across a restart) whose one
// route posts to the controller's webhook: Vigil's own alerts come back to it.
class Alertmanager {
 public:
  Alertmanager(const testing::TempDir& dir, int webhook_port, const std::string& token)
      : dir_(dir), port_(testing::FreeLoopbackPort()) {
    testing::WriteFile(
        dir.File("alertmanager.yml"),
        absl::StrCat("route: {receiver: vigil, group_by: [alertname], group_wait: 0s, "
                     "group_interval: 1s, repeat_interval: 1h}\n"
                     "receivers: [{name: vigil, webhook_configs: [{url: 'http://127.0.0.1:",
                     webhook_port, "/api/v1/alertmanager', send_resolved: true, ",
                     "http_config: {authorization: {type: Bearer, credentials: '", token,
                     "'}}}]}]\n"));
    Start();
  }
  void Start() {
    process_ = std::make_unique<Subprocess>(
        std::vector<std::string>{
            "prometheus-alertmanager", "--config.file=" + dir_.File("alertmanager.yml"),
            "--storage.path=" + dir_.File("alertmanager"),
            absl::StrCat("--web.listen-address=127.0.0.1:", port_), "--cluster.listen-address="},
        std::map<std::string, std::string>{},
        dir_.File(absl::StrCat("alertmanager-", ++runs_, ".log")));
  }
  void Stop() { process_->Stop(); }
  bool Ready() { return testing::HttpGet(port_, "/-/ready", absl::Seconds(2)) == 200; }
  uint16_t port() const { return port_; }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_); }
  std::string Output() const { return process_->Output(); }
  // `amtool alert query` with `matcher`: the active alerts' lines (header dropped).
  std::vector<std::string> Query(const std::string& matcher) {
    CommandResult r =
        RunCommand({"amtool", "alert", "query", "--alertmanager.url=" + url(), matcher});
    std::vector<std::string> lines;
    if (r.exit_code != 0) {
      ADD_FAILURE() << r.output;
      return lines;
    }
    for (absl::string_view line : absl::StrSplit(r.stdout_text, '\n', absl::SkipWhitespace())) {
      if (!absl::StartsWith(line, "Alertname")) {
        lines.emplace_back(line);
      }
    }
    return lines;
  }

 private:
  const testing::TempDir& dir_;
  uint16_t port_;
  int runs_ = 0;
  std::unique_ptr<Subprocess> process_;
};

class NotificationsTest : public ::testing::Test {
 protected:
  NotificationsTest()
      : grpc_port_(testing::FreeLoopbackPort()),
        http_port_(testing::FreeLoopbackPort()),
        address_(absl::StrCat("127.0.0.1:", grpc_port_)) {
    token_ = testing::AddVigilUser(db(), "tester", "admin");
    webhook_token_ = testing::AddVigilUser(db(), "alertmanager", "responder");
    testing::WriteFile(dir_.File("hook.secret"), absl::StrCat(kSecret, "\n"));
  }

  // `extra`: more lines of the notifications section, indented by two spaces.
  void WriteConfig(const std::string& alertmanager_url, const std::string& extra = "") {
    testing::WriteFile(dir_.File("controller.yaml"), absl::StrCat(R"(notifications:
  external_url: https://vigil.example
)",
                                                                  extra, R"(  receivers:
    - name: am
      type: alertmanager
      url: )",
                                                                  alertmanager_url, R"(
    - name: hook
      type: webhook
      url: http://127.0.0.1:)",
                                                                  receiver_.port(), R"(/hook
      secret_file: )",
                                                                  dir_.File("hook.secret"), R"(
)"));
  }

  void StartController() {
    controller_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("vigil-controller"), "--listen=" + address_,
                                 "--db=" + db(), "--insecure",
                                 absl::StrCat("--http-listen=127.0.0.1:", http_port_),
                                 "--config=" + dir_.File("controller.yaml")},
        std::map<std::string, std::string>{},
        dir_.File(absl::StrCat("controller-", ++controllers_, ".log")));
    ASSERT_TRUE(WaitUntil([&] { return Cli({"agents"}).exit_code == 0; }, absl::Seconds(10)))
        << controller_->Output();
  }

  CommandResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {BinaryPath("vigil"), "--controller=" + address_, "--insecure",
                               "--token=" + token_});
    return RunCommand(args);
  }

  // Opens an incident through the controller's own webhook, as an Alertmanager would. Alerts on
  // different hosts with different names open different incidents.
  std::string OpenIncident(const std::string& alertname, const std::string& host = "db-1") {
    const std::string body = absl::StrCat(
        R"({"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":")",
        alertname, R"(","instance":")", host,
        R"(:9100","severity":"critical","service":"rag-api"},"annotations":{"summary":"disk full"},"startsAt":"2026-01-01T00:00:00Z"}]})");
    http::HttpClientOptions options;
    options.headers.emplace_back("Authorization", "Bearer " + webhook_token_);
    absl::StatusOr<http::HttpClientResponse> r =
        http::HttpPost(absl::StrCat("http://127.0.0.1:", http_port_, "/api/v1/alertmanager"), body,
                       "application/json", options);
    EXPECT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().ToString());
    std::string id;
    EXPECT_TRUE(WaitUntil(
        [&] {
          for (const v1::Incident& i : Incidents()) {
            for (const std::string& rule : i.alert_rules()) {
              if (rule == alertname) {
                id = i.id();
              }
            }
          }
          return !id.empty();
        },
        absl::Seconds(10)));
    return id;
  }

  std::vector<v1::Incident> Incidents() {
    v1::ListIncidentsResponse r;
    CommandResult c = Cli({"incidents", "--state=all", "-o", "json"});
    if (c.exit_code != 0 || !ParseJson(c.stdout_text, &r)) {
      return {};
    }
    return {r.incidents().begin(), r.incidents().end()};
  }

  // A sample of the controller's /metrics ("name{labels}"), -1 when absent.
  double Metric(const std::string& series) {
    std::string page;
    if (testing::HttpGet(http_port_, "/metrics", absl::Seconds(2), &page) != 200) {
      return -1;
    }
    for (absl::string_view line : absl::StrSplit(page, '\n')) {
      if (absl::StartsWith(line, series + " ")) {
        double v = 0;
        if (absl::SimpleAtod(line.substr(series.size() + 1), &v)) {
          return v;
        }
      }
    }
    return -1;
  }

  std::string db() const { return dir_.File("vigil.db"); }

  testing::TempDir dir_;
  const uint16_t grpc_port_;
  const uint16_t http_port_;
  const std::string address_;
  Receiver receiver_;
  std::unique_ptr<Subprocess> controller_;
  std::string token_;
  std::string webhook_token_;
  int controllers_ = 0;
};

TEST_F(NotificationsTest, AlertmanagerShowsTheIncidentUntilResolvedAndTheWebhookIsSigned) {
  Alertmanager am(dir_, http_port_, webhook_token_);
  ASSERT_TRUE(WaitUntil([&] { return am.Ready(); }, absl::Seconds(15))) << am.Output();
  WriteConfig(am.url());
  StartController();

  const std::string id = OpenIncident("DiskFull");
  ASSERT_FALSE(id.empty()) << controller_->Output();
  const std::string matcher = absl::StrCat("incident_id=", id);
  ASSERT_TRUE(WaitUntil([&] { return am.Query(matcher).size() == 1; }, absl::Seconds(15)))
      << controller_->Output();
  const std::string line = am.Query(matcher)[0];
  EXPECT_TRUE(absl::StrContains(line, "VigilIncident")) << line;
  ASSERT_TRUE(WaitUntil([&] { return receiver_.Count("opened", id) == 1; }, absl::Seconds(15)));

  // Alertmanager routed Vigil's alert back to the controller: dropped, no second incident.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Metric("vigil_webhook_self_alerts_dropped_total{reason=\"vigil_source\"}") >= 1;
      },
      absl::Seconds(15)))
      << am.Output() << controller_->Output();
  EXPECT_EQ(Incidents().size(), 1u);

  // Acknowledge reaches the webhook only; resolve ends the alert in Alertmanager.
  ASSERT_EQ(Cli({"incident", "ack", id}).exit_code, 0);
  ASSERT_TRUE(
      WaitUntil([&] { return receiver_.Count("acknowledged", id) == 1; }, absl::Seconds(15)));
  CommandResult resolved = Cli({"incident", "resolve", id, "disk cleaned"});
  ASSERT_EQ(resolved.exit_code, 0) << resolved.output;
  ASSERT_TRUE(WaitUntil([&] { return am.Query(matcher).empty(); }, absl::Seconds(15)))
      << controller_->Output();
  ASSERT_TRUE(WaitUntil([&] { return receiver_.Count("resolved", id) == 1; }, absl::Seconds(15)));
  EXPECT_EQ(receiver_.bad_signatures(), 0);
  for (const auto& [key, n] : receiver_.by_key()) {
    EXPECT_EQ(n, 1) << "idempotency key " << key;
  }
  EXPECT_EQ(receiver_.by_key().size(), 3u);  // opened, acknowledged, resolved
  EXPECT_EQ(Metric("vigil_notifications_pending{receiver=\"am\"}"), 0);
  EXPECT_EQ(Metric("vigil_notifications_sent_total{receiver=\"am\"}"), 2);  // opened, resolved

  // The test command: a receiver that answers, and one that does not exist.
  CommandResult test = Cli({"notify", "test", "hook"});
  EXPECT_EQ(test.exit_code, 0) << test.output;
  EXPECT_TRUE(absl::StrContains(test.stdout_text, "accepted the test notification")) << test.output;
  EXPECT_EQ(receiver_.Count("test"), 1);
  test = Cli({"notify", "test", "am"});
  EXPECT_EQ(test.exit_code, 0) << test.output;
  // Admins only: a responder may not page people with tests.
  CommandResult responder =
      RunCommand({BinaryPath("vigil"), "--controller=" + address_, "--insecure",
                  "--token=" + webhook_token_, "notify", "test", "hook"});
  EXPECT_EQ(responder.exit_code, 1) << responder.output;
  EXPECT_TRUE(absl::StrContains(absl::AsciiStrToLower(responder.output), "admin"))
      << responder.output;
  EXPECT_EQ(receiver_.Count("test"), 1);
  test = Cli({"notify", "test", "pagerduty"});
  EXPECT_EQ(test.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(test.output, "no receiver named 'pagerduty'")) << test.output;
  EXPECT_TRUE(absl::StrContains(test.output, "am, hook")) << test.output;
}

// A short outage (about 6 s) with a controller restart inside it: attempts fail, back off,
// outlive the restart and resume. The minute-long outage is AnAlertmanagerOutageOfAMinute... below.
TEST_F(NotificationsTest, AnOutageAndARestartLoseNothingAndSendNothingTwice) {
  Alertmanager am(dir_, http_port_, webhook_token_);
  ASSERT_TRUE(WaitUntil([&] { return am.Ready(); }, absl::Seconds(15))) << am.Output();
  WriteConfig(am.url());
  StartController();

  am.Stop();
  receiver_.SetDown(true);
  const std::string id = OpenIncident("DiskFull");
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(Cli({"incident", "resolve", id, "disk cleaned"}).exit_code, 0);
  ASSERT_TRUE(WaitUntil([&] { return receiver_.refused() >= 1; }, absl::Seconds(15)));
  ASSERT_TRUE(
      WaitUntil([&] { return Metric("vigil_notification_failures_total{receiver=\"am\"}") >= 1; },
                absl::Seconds(15)));
  // Both changes wait in the outbox for each receiver.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Metric("vigil_notifications_pending{receiver=\"am\"}") == 2 &&
               Metric("vigil_notifications_pending{receiver=\"hook\"}") == 2;
      },
      absl::Seconds(15)));

  // The controller restarts in the middle of the outage: the outbox is on disk.
  ASSERT_EQ(controller_->Stop(), 0) << controller_->Output();
  StartController();
  absl::SleepFor(absl::Seconds(3));  // the outage goes on a while (not an assertion on time)
  EXPECT_TRUE(receiver_.by_key().empty());

  receiver_.SetDown(false);
  am.Start();
  ASSERT_TRUE(WaitUntil([&] { return am.Ready(); }, absl::Seconds(15))) << am.Output();
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Metric("vigil_notifications_pending{receiver=\"am\"}") == 0 &&
               Metric("vigil_notifications_pending{receiver=\"hook\"}") == 0;
      },
      absl::Seconds(60)))
      << controller_->Output();
  // Everything arrived, each once: opened and resolved, in order, under distinct keys.
  EXPECT_EQ(receiver_.Count("opened", id), 1);
  EXPECT_EQ(receiver_.Count("resolved", id), 1);
  EXPECT_EQ(receiver_.by_key().size(), 2u);
  for (const auto& [key, n] : receiver_.by_key()) {
    EXPECT_EQ(n, 1) << "idempotency key " << key;
  }
  EXPECT_EQ(receiver_.bad_signatures(), 0);
  // Alertmanager got the open and then the resolve: nothing active for the incident.
  EXPECT_EQ(Metric("vigil_notifications_sent_total{receiver=\"am\"}"), 2);
  EXPECT_TRUE(am.Query(absl::StrCat("incident_id=", id)).empty());
}

// A real Prometheus scrapes the controller's /metrics (job "vigil") and itself (job
// "prometheus"), with an always-firing rule on each, and sends both alerts through a real
// Alertmanager to the webhook: the one about Prometheus opens an incident, the one about Vigil
// is recognised by the default webhook_self_alerts entry vigil_job, counted and logged.
TEST_F(NotificationsTest, APrometheusAlertAboutVigilOpensNoIncident) {
  Alertmanager am(dir_, http_port_, webhook_token_);
  ASSERT_TRUE(WaitUntil([&] { return am.Ready(); }, absl::Seconds(15))) << am.Output();
  WriteConfig(am.url());
  StartController();

  const uint16_t prom_port = testing::FreeLoopbackPort();
  testing::WriteFile(dir_.File("rules.yml"), R"(groups:
  - name: about
    interval: 1s
    rules:
      - alert: VigilControllerUp
        expr: up{job="vigil"} == 1
        labels: {severity: warning}
      - alert: PrometheusUp
        expr: up{job="prometheus"} == 1
        labels: {severity: warning}
)");
  testing::WriteFile(
      dir_.File("prometheus.yml"),
      absl::StrCat("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                   "rule_files: ['",
                   dir_.File("rules.yml"),
                   "']\n"
                   "alerting: {alertmanagers: [{static_configs: [{targets: ['127.0.0.1:",
                   am.port(),
                   "']}]}]}\n"
                   "scrape_configs:\n"
                   "  - {job_name: vigil, static_configs: [{targets: ['127.0.0.1:",
                   http_port_,
                   "']}]}\n"
                   "  - {job_name: prometheus, static_configs: [{targets: ['127.0.0.1:",
                   prom_port, "']}]}\n"));
  Subprocess prometheus({"/usr/bin/prometheus", "--config.file=" + dir_.File("prometheus.yml"),
                         "--storage.tsdb.path=" + dir_.File("prometheus-data"),
                         absl::StrCat("--web.listen-address=127.0.0.1:", prom_port)},
                        {}, dir_.File("prometheus.log"));

  // The alert about Prometheus shows the path works end to end ...
  auto has_incident_for = [&](const std::string& rule) {
    for (const v1::Incident& i : Incidents()) {
      for (const std::string& r : i.alert_rules()) {
        if (r == rule) {
          return true;
        }
      }
    }
    return false;
  };
  ASSERT_TRUE(WaitUntil([&] { return has_incident_for("PrometheusUp"); }, absl::Seconds(60)))
      << prometheus.Output() << am.Output() << controller_->Output();
  // ... and the one about Vigil took it too, and was turned away.
  ASSERT_TRUE(WaitUntil(
      [&] { return Metric("vigil_webhook_self_alerts_dropped_total{reason=\"vigil_job\"}") >= 1; },
      absl::Seconds(30)))
      << am.Output() << controller_->Output();
  EXPECT_FALSE(has_incident_for("VigilControllerUp"));
  EXPECT_EQ(Incidents().size(), 1u);
  EXPECT_EQ(Metric("vigil_webhook_self_alerts_dropped_total{reason=\"vigil_service\"}"), 0);
  const std::string log = controller_->Output();
  EXPECT_TRUE(absl::StrContains(log, "alert VigilControllerUp from")) << log;
  EXPECT_TRUE(absl::StrContains(log, "webhook_self_alerts 'vigil_job'")) << log;
}

// Keeps a loopback port from being handed to another process while the server that owns it is
// down (ctest runs tests side by side, each picking free ports): bound, never listening, with
// SO_REUSEADDR so that the owner can bind it again once this is gone.
class PortHold {
 public:
  explicit PortHold(uint16_t port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    const int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    // Best effort: when it cannot be bound, the port is merely unprotected.
    (void)bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  }
  ~PortHold() { close(fd_); }
  PortHold(const PortHold&) = delete;
  PortHold& operator=(const PortHold&) = delete;

 private:
  int fd_;
};

// The issue's outage: Alertmanager's process stopped for a whole minute while incidents open
// and resolve (the webhook receiver stays up), then started again, empty (Alertmanager keeps its
// alerts in memory only). Every notification arrives once, in order: Alertmanager shows the
// incidents still open, including one it knew before the outage and forgot (the resend puts it
// back), and neither resolved one; the webhook has each change under its own key.
TEST_F(NotificationsTest, AnAlertmanagerOutageOfAMinuteLosesNothing) {
  Alertmanager am(dir_, http_port_, webhook_token_);
  ASSERT_TRUE(WaitUntil([&] { return am.Ready(); }, absl::Seconds(15))) << am.Output();
  // Retries at most 5 s apart, so delivery resumes within 5 s of Alertmanager's return, and open
  // incidents re-posted every 5 s.
  WriteConfig(am.url(), "  retry_max: 5s\n  resend_interval: 5s\n");
  StartController();

  const std::string before_open = OpenIncident("DiskFull", "db-1");
  const std::string before_resolved = OpenIncident("HighLoad", "web-1");
  ASSERT_FALSE(before_open.empty());
  ASSERT_FALSE(before_resolved.empty());
  ASSERT_NE(before_open, before_resolved);
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Metric("vigil_notifications_sent_total{receiver=\"am\"}") == 2 &&
               am.Query("alertname=VigilIncident").size() == 2;
      },
      absl::Seconds(15)))
      << controller_->Output();

  am.Stop();
  const absl::Time outage_start = absl::Now();
  std::optional<PortHold> hold(std::in_place, am.port());
  const std::string during_open = OpenIncident("SlowQueries", "db-2");
  const std::string during_resolved = OpenIncident("HighErrors", "web-2");
  ASSERT_FALSE(during_open.empty());
  ASSERT_FALSE(during_resolved.empty());
  ASSERT_EQ(Cli({"incident", "resolve", before_resolved, "load gone"}).exit_code, 0);
  ASSERT_EQ(Cli({"incident", "resolve", during_resolved, "errors gone"}).exit_code, 0);
  // The webhook receiver is up: it has everything at once; Alertmanager's share waits.
  ASSERT_TRUE(WaitUntil([&] { return receiver_.by_key().size() == 6u; }, absl::Seconds(15)));
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Metric("vigil_notifications_pending{receiver=\"am\"}") == 4 &&
               Metric("vigil_notification_failures_total{receiver=\"am\"}") >= 2;
      },
      absl::Seconds(15)))
      << controller_->Output();

  // The rest of the minute: the scenario's length, not an assertion on time.
  absl::SleepFor(outage_start + absl::Minutes(1) - absl::Now());
  EXPECT_EQ(Metric("vigil_notifications_pending{receiver=\"am\"}"), 4);
  EXPECT_EQ(Metric("vigil_notifications_sent_total{receiver=\"am\"}"), 2);
  hold.reset();  // released: Alertmanager binds it again (a taken port shows in its output)
  am.Start();
  ASSERT_TRUE(WaitUntil([&] { return am.Ready(); }, absl::Seconds(15))) << am.Output();

  ASSERT_TRUE(WaitUntil([&] { return Metric("vigil_notifications_pending{receiver=\"am\"}") == 0; },
                        absl::Seconds(30)))
      << controller_->Output();
  // Each outbox row reached Alertmanager once: the two before the outage, then open and
  // resolve of one incident, the open of the other, and the resolve of the first.
  EXPECT_EQ(Metric("vigil_notifications_sent_total{receiver=\"am\"}"), 6);
  // Alertmanager shows the open incidents, the one from before the outage back by the resend,
  // and not the resolved ones.
  auto active = [&](const std::string& id) {
    return am.Query(absl::StrCat("incident_id=", id)).size() == 1;
  };
  ASSERT_TRUE(
      WaitUntil([&] { return active(during_open) && active(before_open); }, absl::Seconds(15)))
      << controller_->Output();
  EXPECT_FALSE(active(before_resolved));
  EXPECT_FALSE(active(during_resolved));
  EXPECT_EQ(am.Query("alertname=VigilIncident").size(), 2u);

  // The webhook: opened for all four, resolved for two, each under its own key, once.
  for (const std::string& id : {before_open, before_resolved, during_open, during_resolved}) {
    EXPECT_EQ(receiver_.Count("opened", id), 1) << id;
  }
  EXPECT_EQ(receiver_.Count("resolved", before_resolved), 1);
  EXPECT_EQ(receiver_.Count("resolved", during_resolved), 1);
  EXPECT_EQ(receiver_.Count("resolved"), 2);
  EXPECT_EQ(receiver_.by_key().size(), 6u);
  for (const auto& [key, n] : receiver_.by_key()) {
    EXPECT_EQ(n, 1) << "idempotency key " << key;
  }
  EXPECT_EQ(receiver_.bad_signatures(), 0);
}

}  // namespace
}  // namespace vigil
