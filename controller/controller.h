// The controller process: opens the store, restores the agent registry and the active incidents,
// serves AgentService and ControlService on one gRPC port and /metrics, the Alertmanager
// webhook and the review page for auditors (/review) on an HTTP port. Telemetry flows ingest
// thread -> rule engine -> incident manager; one housekeeping thread ticks the rules and persists
// registry changes.
// Start/Stop/Reload from one thread; the services inside are thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/http/http_server.h"
#include "common/transport.h"
#include "controller/api/control_service.h"
#include "controller/audit/auditor.h"
#include "controller/audit/checkpointer.h"
#include "controller/auth/auth.h"
#include "controller/http/alertmanager_webhook.h"
#include "controller/http/fleet_endpoint.h"
#include "controller/incidents/incident_manager.h"
#include "controller/notify/notifier.h"
#include "controller/notify/notify_config.h"
#include "controller/timeline/timeline_writer.h"
#include "controller/ingest/agent_service.h"
#include "controller/ingest/fleet_state.h"
#include "controller/remediation/remediation_manager.h"
#include "controller/review/review_page.h"
#include "controller/rules/rule_engine.h"
#include "storage/db_lock.h"
#include "storage/store.h"

namespace vigil::controller {

struct ControllerOptions {
  std::string listen = "127.0.0.1:7443";
  // A second gRPC address for the agents (empty: none; they use `listen` with the CLI). Its
  // accept queue is kept at `agent_listen_backlog` connections, so a reconnect storm of
  // thousands of agents waits in their own SYN retries rather than in the queues the CLI's calls
  // share: bench/scale.sh at 10,000 agents, docs/scale-log.md. Both addresses
  // serve every RPC with the same authentication and roles; only the queue differs.
  std::string agent_listen;
  int agent_listen_backlog = 64;
  std::string db_path = "/var/lib/vigil/vigil.db";  // packaged installs; run.sh passes ./data
  // Prometheus /metrics and the Alertmanager webhook; empty: no HTTP port.
  std::string http_listen = "127.0.0.1:9464";
  // TLS on the HTTP port: certificate and key (both or neither); with a CA, client certificates
  // are verified and their CN may stand for a user (e.g. Alertmanager as a responder).
  std::string http_tls_cert;
  std::string http_tls_key;
  std::string http_tls_ca;
  AlertmanagerReceiver::Limits webhook;
  // Alerts about Vigil itself, which the webhook never makes incidents (settings file:
  // `webhook_self_alerts`); Vigil's own notifications are recognised whatever this holds.
  std::vector<SelfAlertRule> webhook_self_alerts = DefaultSelfAlertRules();
  // GET /fleet/metrics for Prometheus, on the HTTP port: served only with a token, read from this
  // file (the secret stays out of the command line and the settings file). Empty: off.
  std::string fleet_metrics_token_file;
  size_t fleet_metrics_max_bytes = size_t{512} << 20;
  std::string rules_path;   // empty: the built-in rules
  std::string policy_path;  // empty: the default approval policy
  // Ed25519 key that signs commands; created on first start. Empty: next to the database
  // (controller-signing.key, and its public half in controller-signing.pub for the agents).
  std::string signing_key_path;
  // Ed25519 key that signs audit checkpoints; created on first start. Empty: next to the
  // database (controller-audit.key, its public half controller-audit.pub for auditors). On
  // another volume than the database, an edit needs both volumes.
  std::string audit_key_path;
  // When the chain's head is signed, and the optional append-only log of checkpoints.
  Checkpointer::Options checkpoints;
  TransportFlags transport;
  // With the watchdog's 250 ms tick, a silent agent is shown disconnected within 3 s of its
  // last message; agents send at least every silence_timeout / 3.
  absl::Duration silence_timeout = absl::Milliseconds(2500);
  absl::Duration registry_flush = absl::Seconds(1);
  // What agents may send (sizes, counts, telemetry time) and how long a gone agent's series stay.
  IngestLimits ingest_limits;
  absl::Duration evict_after = absl::Hours(1);
  // Admission of new agent streams (see AgentServiceImpl::Options).
  size_t admission_queue = 512;
  absl::Duration admission_max_delay = absl::Milliseconds(500);
  int ingest_nice = 5;  // nice levels the ingest thread runs below gRPC's (0: equal)
  absl::Duration rule_tick = absl::Milliseconds(250);
  IncidentManager::Options incidents;
  RemediationManager::Options remediation;
  RuleEngine::Options rule_engine;
  WatchHub::Options watch;  // `vigil watch` streams: backfill page size, memory caps
  // A missing database where evidence shows one existed (its signing key, WAL or lock file) is
  // refused unless this is set (--init): silently starting empty would lose every timeline.
  bool init = false;
  // Receivers of incident notifications (settings file: `notifications`); none by default.
  NotifyConfig notifications;
};

// The command-signing key in use: --signing-key, or controller-signing.key beside the database.
std::string SigningKeyPath(const ControllerOptions& options);
// The audit key in use: --audit-key, or controller-audit.key beside the database.
std::string AuditKeyPath(const ControllerOptions& options);

// The GRPC_EXPERIMENTS value the controller runs gRPC with, from the environment's (null when
// unset): gRPC 1.51's fixed 8 KiB read chunks turned off ("-tcp_read_chunks"), unless the
// environment names that experiment itself. Each agent's connection holds its read buffer while
// it waits for the agent's next message; with the chunks off that buffer follows what the
// connection reads (an agent's message of 50 series is about 1.4 KB), see the server's
// GRPC_ARG_TCP_READ_CHUNK_SIZE. main() sets it before gRPC reads it, at its first call.
std::string GrpcExperimentsForController(const char* from_environment);

// Refuses to create `db_path` anew when files beside it show a database existed (its WAL, its
// lock file, the signing key at `key_path`), unless `init`; logs when a database is created.
absl::Status CheckDatabaseEvidence(const std::string& db_path, const std::string& key_path,
                                   bool init);

// Loads the rules a controller would run with: the file's, or the built-in ones. The error lists
// every problem, one per line, each with file and line.
absl::StatusOr<std::vector<Rule>> LoadRules(const std::string& rules_path);

class Controller {
 public:
  Controller(ControllerOptions options, const Clock* clock);
  ~Controller();

  // Opens the store and starts serving; errors name what failed (db path, listen address).
  absl::Status Start();
  // Blocks until Stop() is called from another thread.
  void Wait();
  void Stop();
  // Re-reads --rules and --policy (on SIGHUP). Both files are validated first and swapped in
  // only when both are valid; otherwise nothing changes and the error lists every problem with
  // file and line. Without either flag there is nothing to re-read: the built-in sets stay, and
  // that counts as a successful reload. Logged and counted (vigil_config_reloads_total).
  // Call after Start() and before Stop(), from one thread at a time.
  absl::Status Reload();

  int port() const { return port_; }
  int agent_port() const { return agent_port_; }  // 0 without ControllerOptions::agent_listen
  int http_port() const { return http_ != nullptr ? http_->port() : 0; }
  IncidentManager& incidents() { return *incidents_; }
  TimelineWriter& timeline_writer() { return *writer_; }
  const std::string& signing_public_key_path() const { return signing_public_path_; }
  const std::string& audit_public_key_path() const { return audit_public_path_; }
  Checkpointer& checkpointer() { return *checkpointer_; }
  Auditor& auditor() { return *auditor_; }
  RuleEngine& rules() { return *rule_engine_; }
  FleetState& fleet() { return fleet_; }
  AgentServiceImpl& agent_service() { return *agent_service_; }

 private:
  class Observer;
  void HousekeepingLoop();
  // Saves the registry rows that changed and acknowledges the telemetry they cover; of the rows
  // whose only change is telemetry progress, this flush's share (RegistryFlushSpread), or all of
  // them when `everything` (on the way out).
  void FlushRegistry(bool everything = false);
  std::string MetricsPage();
  // The fleet endpoint's help text of families: the schema's, else what a connected agent
  // declared (a per-second rate says it is one).
  FamilyHelp FleetFamilyHelp();
  // Rules on scraped metrics against what connected agents declare: warns (once per finding
  // while it holds) about a metric no connected agent declares and about a kind mismatch (such
  // a rule never fires), and counts both for /metrics. Housekeeping thread only.
  void CheckScrapedMetrics();

  const ControllerOptions options_;
  const Clock* clock_;
  std::unique_ptr<storage::DatabaseLock> db_lock_;  // held from Start until destruction
  std::unique_ptr<storage::Store> store_;
  FleetState fleet_;
  std::unique_ptr<AgentServiceImpl> agent_service_;
  std::unique_ptr<TimelineWriter> writer_;
  std::unique_ptr<IncidentManager> incidents_;
  SuggestionBook suggestions_;  // the rules' suggested fixes, swapped on reload
  std::unique_ptr<RemediationManager> remediation_;
  std::string signing_public_path_;
  std::string audit_public_path_;
  std::unique_ptr<Checkpointer> checkpointer_;
  std::unique_ptr<Auditor> auditor_;
  std::unique_ptr<RuleEngine> rule_engine_;
  std::unique_ptr<Observer> observer_;
  absl::Status AuthorizeWebhook(const http::HttpRequest& request);
  absl::Status StoreExternalAlerts(std::vector<v1::Alert> alerts);

  // What an incident report states about the chain (the API's export and the review page's).
  absl::StatusOr<v1::VerifyAuditResponse> AuditForExport(const std::string& caller);
  // Drops cached callers when another process changed the users table (housekeeping, 1/s).
  void RefreshUsers();
  std::unique_ptr<AlertmanagerReceiver> webhook_;
  std::unique_ptr<FleetMetricsEndpoint> fleet_endpoint_;  // null: no token configured
  std::unique_ptr<review::ReviewPage> review_;  // with the HTTP port: /review for auditors
  // Incident notifications: the outbox's sender (null without receivers).
  std::unique_ptr<HttpTransport> notify_transport_;
  std::unique_ptr<Notifier> notifier_;
  std::unique_ptr<http::HttpServer> http_;
  std::unique_ptr<ControlServiceImpl> control_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  int agent_port_ = 0;
  std::thread housekeeping_;
  absl::Time started_at_;
  absl::Notification stop_;
  bool started_ = false;
  uint64_t registry_flushes_ = 0;  // housekeeping thread (and Stop, after it is joined)
  std::atomic<uint32_t> registry_spread_{1};
  std::atomic<uint64_t> reloads_ok_{0};
  std::atomic<uint64_t> reloads_failed_{0};
  std::atomic<uint64_t> rules_undeclared_metric_{0};
  std::atomic<uint64_t> rules_kind_mismatch_{0};
  std::vector<std::string> scraped_warned_;  // the findings last logged (housekeeping thread)
};

}  // namespace vigil::controller
