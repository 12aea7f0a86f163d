#include "controller/controller.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"
#include "common/metric_schema.h"
#include "common/status.h"
#include "controller/accept_queue.h"
#include "controller/api/incident_pages.h"
#include "controller/audit/bundle_export.h"
#include "controller/http/alertmanager_webhook.h"
#include "controller/incidents/incident_report.h"
#include "controller/notify/router.h"
#include "controller/review/review_pages.h"
#include "controller/rules/thresholds.h"
#include "storage/sqlite/sqlite_store.h"

namespace vigil::controller {

// Fans what the ingest thread hears out to the rule engine and the incident manager; both only
// queue or update memory, so the ingest thread never waits on disk.
// It also gives each agent, after its Welcome and on every rule reload, the thresholds to watch
// between its collection rounds (see controller/rules/thresholds.h).
class Controller::Observer final : public IngestObserver {
 public:
  using SendFn = std::function<bool(const std::string& agent_id, v1::ControllerMessage)>;
  Observer(RuleEngine* rules, const FleetState* fleet, IncidentManager* incidents,
           RemediationManager* remediation, SendFn send)
      : rules_(rules),
        fleet_(fleet),
        incidents_(incidents),
        remediation_(remediation),
        send_(std::move(send)) {}
  void OnConnected(const v1::AgentInfo& agent) override {
    rules_->OnConnected(agent.agent_id(), Labels(agent.labels().begin(), agent.labels().end()),
                        fleet_->DeclaredRates(agent.agent_id()));
    remediation_->OnAgentConnected(agent.agent_id());
    // Queued behind the Welcome; under the lock so a reload's newer set is never overtaken.
    absl::MutexLock lock(&watch_mu_);
    ++connected_[agent.agent_id()];
    send_(agent.agent_id(), watch_);
    // Every agent keeps the newest audit checkpoint (a witness off the box).
    if (checkpointer_ != nullptr) {
      if (std::optional<v1::AuditCheckpoint> latest = checkpointer_->latest()) {
        v1::ControllerMessage message;
        *message.mutable_audit_checkpoint() = *std::move(latest);
        send_(agent.agent_id(), std::move(message));
      }
    }
  }
  void OnWitness(const std::string& agent_id, const v1::AuditCheckpoint& checkpoint) override {
    if (auditor_ != nullptr) auditor_->CheckWitness(absl::StrCat("agent ", agent_id), checkpoint);
  }
  // Before the observer is installed.
  void SetAudit(Auditor* auditor, Checkpointer* checkpointer) {
    auditor_ = auditor;
    checkpointer_ = checkpointer;
  }
  // A new checkpoint to every connected agent.
  void BroadcastCheckpoint(const v1::AuditCheckpoint& checkpoint) {
    v1::ControllerMessage message;
    *message.mutable_audit_checkpoint() = checkpoint;
    absl::MutexLock lock(&watch_mu_);
    for (const auto& [agent_id, streams] : connected_) {
      send_(agent_id, message);
    }
  }
  // Derives the thresholds from `rules` and sends them to every connected agent.
  void SetRules(const std::vector<Rule>& rules) {
    WatchDerivation derived = DeriveWatchThresholds(rules);
    spdlog::info(
        "agents watch {} threshold(s) between rounds, for rule(s): {}; at the rounds only: {}",
        derived.message.thresholds_size(),
        derived.watched.empty() ? "none" : absl::StrJoin(derived.watched, ", "),
        derived.unwatched.empty() ? "none" : absl::StrJoin(derived.unwatched, "; "));
    absl::MutexLock lock(&watch_mu_);
    *watch_.mutable_watch_thresholds() = std::move(derived.message);
    for (const auto& [agent_id, streams] : connected_) {
      send_(agent_id, watch_);
    }
  }
  void OnDisconnected(const std::string& agent_id, absl::Time when) override {
    {
      absl::MutexLock lock(&watch_mu_);
      if (auto it = connected_.find(agent_id); it != connected_.end() && --it->second <= 0) {
        connected_.erase(it);
      }
    }
    // Streams end because the controller is stopping, not because agents left: their alerts
    // (pending `for` timers included) stay as stored, for the next start to take back.
    if (!stopping_.load()) {
      rules_->OnDisconnected(agent_id);
    }
  }
  void Stopping() { stopping_ = true; }
  void OnTelemetry(const std::string& agent_id, const v1::TelemetryBatch& batch,
                   const std::vector<SeriesState*>& dictionary) override {
    rules_->OnTelemetry(agent_id, batch, dictionary);
  }
  void OnDiagnostics(const std::string& agent_id, const v1::Diagnostics& diagnostics) override {
    incidents_->OnDiagnostics(agent_id, diagnostics);
  }
  void OnCommandResult(const std::string& agent_id, const v1::CommandResult& result,
                       std::function<void()> acknowledge) override {
    remediation_->OnCommandResult(agent_id, result, std::move(acknowledge));
  }
  void OnEvicting(const std::string& agent_id) override { rules_->ForgetAgent(agent_id); }

 private:
  RuleEngine* rules_;
  const FleetState* fleet_;
  IncidentManager* incidents_;
  RemediationManager* remediation_;
  const SendFn send_;
  Auditor* auditor_ = nullptr;
  Checkpointer* checkpointer_ = nullptr;
  std::atomic<bool> stopping_{false};
  absl::Mutex watch_mu_;
  v1::ControllerMessage watch_ ABSL_GUARDED_BY(watch_mu_);  // the thresholds, ready to send
  // Streams per agent id (a reconnect overlaps the old stream's end).
  absl::flat_hash_map<std::string, int> connected_ ABSL_GUARDED_BY(watch_mu_);
};

absl::StatusOr<std::vector<Rule>> LoadRules(const std::string& rules_path) {
  if (rules_path.empty()) {
    return DefaultRules();
  }
  RuleFile file = LoadRuleFile(rules_path);
  if (!file.errors.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("rule file ", rules_path, " has ",
                                                   file.errors.size(), " error(s):\n  ",
                                                   absl::StrJoin(file.errors, "\n  ")));
  }
  return std::move(file.rules);
}

Controller::Controller(ControllerOptions options, const Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      fleet_(FleetState::Options{.limits = options_.ingest_limits,
                                 .acknowledge_when_stored = true}) {}

Controller::~Controller() { Stop(); }

absl::Status Controller::Start() {
  ASSIGN_OR_RETURN(auto credentials, MakeServerCredentials(options_.transport, options_.listen));
  if (!options_.agent_listen.empty()) {
    // Plain text is refused off loopback on the agents' address as on the other.
    RETURN_IF_ERROR(MakeServerCredentials(options_.transport, options_.agent_listen).status());
  }
  ASSIGN_OR_RETURN(std::vector<Rule> rules, LoadRules(options_.rules_path));
  const size_t rule_count = rules.size();
  ASSIGN_OR_RETURN(Policy policy, LoadPolicy(options_.policy_path));
  const std::string key_path = SigningKeyPath(options_);
  signing_public_path_ =
      absl::StrCat(absl::StripSuffix(absl::string_view(key_path), ".key"), ".pub");
  RETURN_IF_ERROR(CheckDatabaseEvidence(options_.db_path, key_path, options_.init));
  ASSIGN_OR_RETURN(store_, storage::OpenSqliteStore(options_.db_path));
  // Before anything is written: two controllers on one database would hand out the same ids.
  ASSIGN_OR_RETURN(db_lock_, storage::DatabaseLock::Acquire(options_.db_path));
  // A damaged file is refused now, with the page SQLite names, not found out on a later read.
  RETURN_IF_ERROR(store_->CheckIntegrity());
  // After the store: it creates the database's folder, where the key goes by default.
  ASSIGN_OR_RETURN(std::unique_ptr<CommandSigner> signer,
                   CommandSigner::LoadOrCreate(key_path, signing_public_path_));
  // The audit key: separate from the command-signing key (auditors get its public half only).
  const std::string audit_key_path = AuditKeyPath(options_);
  audit_public_path_ =
      absl::StrCat(absl::StripSuffix(absl::string_view(audit_key_path), ".key"), ".pub");
  ASSIGN_OR_RETURN(std::unique_ptr<audit::CheckpointSigner> audit_signer,
                   audit::CheckpointSigner::LoadOrCreate(audit_key_path, audit_public_path_));
  ASSIGN_OR_RETURN(std::vector<v1::AgentInfo> registry, store_->ListAgents());
  fleet_.Restore(registry);

  agent_service_ = std::make_unique<AgentServiceImpl>(
      &fleet_, clock_,
      AgentServiceImpl::Options{.silence_timeout = options_.silence_timeout,
                                .limits = options_.ingest_limits,
                                .evict_after = options_.evict_after,
                                .max_pending_hellos = options_.admission_queue,
                                .max_queue_delay = options_.admission_max_delay,
                                .ingest_nice = options_.ingest_nice});
  writer_ = std::make_unique<TimelineWriter>(store_.get(), clock_);
  checkpointer_ = std::make_unique<Checkpointer>(store_.get(), clock_, std::move(audit_signer),
                                                 options_.checkpoints, writer_.get());
  writer_->AddListener([this](const v1::TimelineEvent& event) { checkpointer_->OnEvent(event); });
  auditor_ = std::make_unique<Auditor>(store_.get(), writer_.get(), clock_);
  RETURN_IF_ERROR(auditor_->Init(checkpointer_->public_key_pem()));
  if (!options_.checkpoints.log_path.empty()) {
    // The append-only log is a witness that is there at start: a database older than it is
    // said at once (and recorded when the writer starts).
    absl::StatusOr<v1::AuditCheckpoint> logged =
        LastLoggedCheckpoint(options_.checkpoints.log_path);
    if (logged.ok()) {
      auditor_->CheckWitness(absl::StrCat("the checkpoint log ", options_.checkpoints.log_path),
                             *logged);
    } else if (logged.status().code() != absl::StatusCode::kNotFound) {
      spdlog::warn("cannot read the checkpoint log: {}", logged.status().message());
    }
  }
  incidents_ = std::make_unique<IncidentManager>(
      writer_.get(), clock_,
      [this](const std::string& agent_id, const v1::CollectDiagnostics& request) {
        v1::ControllerMessage message;
        *message.mutable_collect_diagnostics() = request;
        return agent_service_->SendTo(agent_id, std::move(message));
      },
      options_.incidents);
  if (!options_.notifications.empty()) {
    // The outbox rows of a batch are planned from its events just before its commit, so they
    // are stored in the same transaction; the notifier is woken once they are.
    notify_transport_ = std::make_unique<HttpTransport>();
    Notifier::Options notify_options;
    notify_options.backoff.max = options_.notifications.retry_max;
    notifier_ = std::make_unique<Notifier>(options_.notifications, store_.get(),
                                           notify_transport_.get(), clock_, notify_options);
    writer_->SetBatchHook([this](storage::WriteBatch& batch) {
      for (v1::Notification& n : PlanNotifications(options_.notifications, batch)) {
        batch.Notify(std::move(n));
      }
    });
    writer_->AddListener([this](const v1::TimelineEvent& event) {
      if (NotificationKind(event).has_value()) {
        notifier_->Wake();
      }
    });
  }
  RETURN_IF_ERROR(incidents_->Start());
  remediation_ = std::make_unique<RemediationManager>(
      writer_.get(), incidents_.get(), clock_, std::move(policy), std::move(signer),
      [this](const std::string& agent_id, v1::Command command) {
        v1::ControllerMessage message;
        *message.mutable_command() = std::move(command);
        return agent_service_->SendTo(agent_id, std::move(message));
      },
      [this](const std::string& agent_id) { return fleet_.AgentActions(agent_id); },
      options_.remediation);
  suggestions_.Set(rules);
  remediation_->UseSuggestions(&suggestions_);
  RETURN_IF_ERROR(remediation_->Start());
  writer_->Start();
  // Histograms keep what the longest quantile window of the rules reads (issue 15: a
  // Prometheus rule's rate(x_bucket[5m]) is a 5-minute window), before any telemetry arrives.
  fleet_.KeepHistogramsFor(HistogramWindowFor(rules));
  rule_engine_ = std::make_unique<RuleEngine>(std::move(rules), clock_, incidents_.get(),
                                              options_.rule_engine);
  // Before any telemetry: pending `for` timers and firing alerts carry on as the same alerts.
  ASSIGN_OR_RETURN(std::vector<v1::Alert> stored_alerts, store_->ListAlerts(false));
  const RuleEngine::Restoration restored =
      rule_engine_->Restore(std::move(stored_alerts), clock_->Now());
  spdlog::info(
      "rule alerts restored: {} pending (timer kept), {} pending (timer restarts, outage longer "
      "than `for` + {}), {} firing or stale; {} older copies superseded, {} of rules no longer "
      "loaded resolved",
      restored.pending_kept, restored.pending_restarted,
      absl::FormatDuration(options_.rule_engine.for_outage_grace), restored.firing,
      restored.superseded, restored.orphaned);
  observer_ = std::make_unique<Observer>(
      rule_engine_.get(), &fleet_, incidents_.get(), remediation_.get(),
      [this](const std::string& agent_id, v1::ControllerMessage message) {
        return agent_service_->SendTo(agent_id, std::move(message));
      });
  observer_->SetRules(rule_engine_->rules());
  observer_->SetAudit(auditor_.get(), checkpointer_.get());
  checkpointer_->SetPublisher(
      [this](const v1::AuditCheckpoint& checkpoint) { observer_->BroadcastCheckpoint(checkpoint); });
  RETURN_IF_ERROR(checkpointer_->Start());
  agent_service_->SetObserver(observer_.get());
  control_service_ = std::make_unique<ControlServiceImpl>(
      &fleet_, store_.get(), incidents_.get(), remediation_.get(), options_.watch);
  control_service_->UseAudit(ControlServiceImpl::AuditHooks{
      .verify =
          [this](const v1::VerifyAuditRequest& request, const std::string& caller) {
            return auditor_->Verify(request, caller);
          },
      .bundle =
          [this](const v1::ExportIncidentRequest& request) {
            return ExportAuditBundle(
                *store_, *checkpointer_,
                audit::BundleScope{.incident_id = request.incident_id(),
                                   .since_unix_ms = request.since_unix_ms(),
                                   .until_unix_ms = request.until_unix_ms()},
                absl::ToUnixMillis(clock_->Now()));
          },
      .for_export = [this](const std::string& caller) { return AuditForExport(caller); }});
  control_service_->UseNotificationTest(
      [this](const std::string& receiver,
             std::function<void(absl::StatusOr<std::string>)> done) {
        if (notifier_ == nullptr) {
          done(absl::NotFoundError(absl::StrCat(
              "no receiver named '", receiver,
              "': no notifications are configured (notifications.receivers in the controller's "
              "settings file)")));
          return;
        }
        notifier_->Test(receiver, std::move(done));
      });
  control_service_->UseSuggestions(&suggestions_, [this](const std::string& agent,
                                                         const std::string& action) {
    std::optional<std::vector<std::string>> offered = fleet_.AgentActions(agent);
    return offered.has_value() &&
           std::find(offered->begin(), offered->end(), action) != offered->end();
  });

  webhook_ = std::make_unique<AlertmanagerReceiver>(
      options_.webhook,
      [this](const http::HttpRequest& request) { return AuthorizeWebhook(request); },
      [this](std::vector<v1::Alert> alerts) { return StoreExternalAlerts(std::move(alerts)); },
      clock_, options_.webhook_self_alerts);
  if (options_.http_listen.empty() && !options_.fleet_metrics_token_file.empty()) {
    spdlog::warn("{} is off: fleet_metrics_token_file is set but the HTTP port is off",
                 kFleetMetricsPath);
  }
  if (!options_.http_listen.empty()) {
    http::HttpServer::Options http_options;
    http_options.tls_cert_file = options_.http_tls_cert;
    http_options.tls_key_file = options_.http_tls_key;
    http_options.tls_ca_file = options_.http_tls_ca;
    http_ = std::make_unique<http::HttpServer>(http_options);
    http_->Handle("GET", "/metrics", [this](const http::HttpRequest&) {
      http::HttpResponse response;
      response.content_type = "text/plain; version=0.0.4; charset=utf-8";
      response.body = MetricsPage();
      return response;
    });
    http_->Handle("POST", "/api/v1/alertmanager",
                  [this](const http::HttpRequest& request) { return webhook_->Handle(request); });
    if (!options_.fleet_metrics_token_file.empty()) {
      absl::StatusOr<std::string> token = ReadBearerTokenFile(options_.fleet_metrics_token_file);
      if (!token.ok()) {
        writer_->Stop();
        return token.status();
      }
      fleet_endpoint_ = std::make_unique<FleetMetricsEndpoint>(
          FleetMetricsEndpoint::Options{.token = *std::move(token),
                                        .max_page_bytes = options_.fleet_metrics_max_bytes},
          [this] { return fleet_.ExposeConnected(); },
          [this] { return FleetFamilyHelp(); });
      http_->Handle("GET", kFleetMetricsPath, [this](const http::HttpRequest& request) {
        return fleet_endpoint_->Handle(request);
      });
      spdlog::info("{} serves the fleet to Prometheus (bearer token from {})", kFleetMetricsPath,
                   options_.fleet_metrics_token_file);
    } else {
      // No token, no page: loopback alone would still show the whole fleet to every local user.
      spdlog::info("{} is off: no fleet_metrics_token_file", kFleetMetricsPath);
    }
    review::ReviewPage::Options review_options;
    review_options.tls = !options_.http_tls_cert.empty();
    review_options.loopback = IsLoopbackAddress(options_.http_listen);
    review_options.clock = clock_;
    review_options.authenticate = [this](absl::string_view token_hash) {
      return control_service_->authenticator().AuthenticateTokenHash(token_hash);
    };
    using ListAnswer = absl::StatusOr<v1::ListIncidentsResponse>;
    review_options.list_incidents = [this](const v1::ListIncidentsRequest& request) -> ListAnswer {
      ASSIGN_OR_RETURN(std::vector<v1::Incident> found, store_->ListIncidents(request.state()));
      v1::ListIncidentsResponse response;
      for (v1::Incident& incident : found) {
        *response.add_incidents() = std::move(incident);
      }
      return response;
    };
    review_options.get_incident = [this](const v1::GetIncidentRequest& request) {
      return LoadIncidentPage(*store_, request);
    };
    // A full check against the signed checkpoints: the auditor's mark covers every event, not
    // just those since the last check (concurrent page loads share one check).
    review_options.verify_audit = [this] {
      v1::VerifyAuditRequest request;
      request.set_full(true);
      return auditor_->Verify(request, "the review page");
    };
    review_options.export_incident = [this](
                                         absl::string_view incident_id,
                                         absl::string_view format) -> absl::StatusOr<std::string> {
      ASSIGN_OR_RETURN(v1::VerifyAuditResponse audit, AuditForExport("the review page"));
      return ExportIncident(*store_, incident_id, format, audit);
    };
    review_ = std::make_unique<review::ReviewPage>(std::move(review_options));
    review_->Register(*http_);
    if (!review_->served()) {
      spdlog::warn(
          "the review page ({}) is not served: the HTTP port is plain HTTP on {}, not loopback; "
          "give it --http-tls-cert and --http-tls-key",
          review::kReviewRoot, options_.http_listen);
    } else {
      spdlog::info("the review page is served at {}://{}{}{}",
                   options_.http_tls_cert.empty() ? "http" : "https", options_.http_listen,
                   review::kReviewRoot,
                   options_.http_tls_cert.empty() ? " (plain HTTP: loopback only)" : "");
    }
    if (absl::Status s = http_->Start(options_.http_listen); !s.ok()) {
      writer_->Stop();
      // The message names the address or the TLS file at fault.
      return absl::Status(s.code(), absl::StrCat("HTTP port: ", s.message()));
    }
  }

  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen, credentials, &port_);
  if (!options_.agent_listen.empty()) {
    builder.AddListeningPort(options_.agent_listen, credentials, &agent_port_);
  }
  builder.RegisterService(agent_service_.get());
  builder.RegisterService(control_service_.get());
  // Agents ping every 10 s on idle streams; allow it, or gRPC answers too_many_pings.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  builder.SetMaxReceiveMessageSize(16 << 20);
  // No bandwidth-delay probing (the agents turn it off too, common/agent_channel.cc): a PING
  // after every message received, for thousands of agents sending a few kilobytes a second,
  // cost more system calls than the messages themselves.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  // Each connection keeps a read buffer while it waits for its next message: 8 KiB of fixed
  // chunks by default, 37 KiB of gRPC's per connection in all (README, "Where an agent's
  // controller memory goes"). With the chunks off (GrpcExperimentsForController) a read is sized
  // by what the connection has been reading, starting from this and doubling when a read fills
  // it: an agent's message of 50 series is about 1.4 KB, so its buffer settles between 2 and 4
  // KB. bench/scale.sh at 10,000 agents: 70.0-74.6 KiB of RSS per agent against 76.2-78.3
  // (five runs each, 2026-12-02), the controller's CPU share within the runs' spread.
  builder.AddChannelArgument(GRPC_ARG_TCP_READ_CHUNK_SIZE, 1024);
  server_ = builder.BuildAndStart();
  std::string bind_error;
  if (server_ == nullptr || port_ == 0 || (!options_.agent_listen.empty() && agent_port_ == 0)) {
    bind_error = absl::StrCat("cannot listen on ", options_.listen);
    if (!options_.agent_listen.empty()) {
      absl::StrAppend(&bind_error, " or ", options_.agent_listen, " (agent_listen)");
    }
    absl::StrAppend(&bind_error, " (address in use, or not an address of this host)");
  } else if (agent_port_ == port_) {
    // gRPC binds with SO_REUSEPORT: one port twice would split connections between two queues
    // and shorten the CLI's too.
    bind_error = absl::StrCat("agent_listen ", options_.agent_listen, " has the port of listen ",
                              options_.listen, ": give the agents a port of their own");
  }
  if (!bind_error.empty()) {
    if (server_ != nullptr) {
      server_->Shutdown();
      server_->Wait();
    }
    if (http_ != nullptr) {
      http_->Stop();
    }
    writer_->Stop();
    return absl::UnavailableError(bind_error);
  }
  std::string agents_at = "the same port";
  if (agent_port_ != 0) {
    agents_at = absl::StrCat(options_.agent_listen, " (port ", agent_port_, ")");
    // Only the queue's length changes: a failure here leaves the system's length, named.
    if (absl::StatusOr<int> set = SetAcceptQueue(agent_port_, options_.agent_listen_backlog);
        set.ok()) {
      absl::StrAppend(&agents_at, ", accept queue ", options_.agent_listen_backlog);
    } else {
      spdlog::warn("agent_listen {}: the accept queue stays net.core.somaxconn's: {}",
                   options_.agent_listen, set.status().message());
    }
  }
  agent_service_->Start();
  if (notifier_ != nullptr) {
    notifier_->Start();
  }
  started_at_ = clock_->Now();
  housekeeping_ = std::thread([this] { HousekeepingLoop(); });
  started_ = true;
  spdlog::info(
      "vigil-controller {} listening on {} (port {}), HTTP {}, agents on {}, store {} with {} "
      "known agent(s), {} rule(s) from {}, {} active incident(s)",
      VIGIL_VERSION, options_.listen, port_,
      http_ == nullptr ? "off" : absl::StrCat("port ", http_->port()), agents_at, options_.db_path,
      registry.size(), rule_count,
      options_.rules_path.empty() ? "the built-in set" : options_.rules_path,
      incidents_->active_incidents());
  return absl::OkStatus();
}

void Controller::Wait() { stop_.WaitForNotification(); }

void Controller::Stop() {
  if (!started_) {
    return;
  }
  started_ = false;
  if (!stop_.HasBeenNotified()) {
    stop_.Notify();
  }
  observer_->Stopping();
  if (http_ != nullptr) {
    http_->Stop();
  }
  // Silence from here on is the shutdown's, not the agents'.
  agent_service_->StopWatchdog();
  // A deadline, or Shutdown waits for agent streams that never end by themselves.
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  agent_service_->Shutdown();
  if (housekeeping_.joinable()) {
    housekeeping_.join();
  }
  server_->Wait();
  // Streams could still deliver (and be acknowledged) batches after the housekeeping thread's
  // last flush: save their sequences too, or a restart would see a gap that is not one.
  FlushRegistry(/*everything=*/true);
  writer_->Stop();  // after the server: watchers and updates are gone; drains its queue
  checkpointer_->Stop();  // after the writer: its last checkpoint covers every event of this run
  if (notifier_ != nullptr) {
    notifier_->Stop();  // what it has not delivered stays in the outbox for the next start
  }
}

absl::Status Controller::Reload() {
  if (options_.rules_path.empty() && options_.policy_path.empty()) {
    ++reloads_ok_;
    spdlog::info(
        "configuration reload: no --rules or --policy to re-read; the built-in rules and policy "
        "stay in force");
    return absl::OkStatus();
  }
  // Both files are read and checked before either is applied.
  std::vector<std::string> errors;
  RuleFile rule_file;
  if (!options_.rules_path.empty()) {
    rule_file = LoadRuleFile(options_.rules_path);
    errors = rule_file.errors;
  }
  absl::StatusOr<Policy> policy = LoadPolicy(options_.policy_path);
  if (!policy.ok()) {
    errors.emplace_back(policy.status().message());
  }
  if (!errors.empty()) {
    ++reloads_failed_;
    spdlog::error("configuration reload refused ({} error(s)); the rules and policy in force stay:",
                  errors.size());
    for (const std::string& e : errors) {
      spdlog::error("  {}", e);
    }
    return absl::InvalidArgumentError(
        absl::StrCat("configuration reload refused; the rules and policy in force stay:\n  ",
                     absl::StrJoin(errors, "\n  ")));
  }
  std::string rules_summary = "the built-in rules stay";
  if (!options_.rules_path.empty()) {
    const size_t count = rule_file.rules.size();
    // The new rules' longest quantile window: a longer one fills from the next batch on.
    fleet_.KeepHistogramsFor(HistogramWindowFor(rule_file.rules));
    const RuleEngine::Replacement r = rule_engine_->ReplaceRules(std::move(rule_file.rules));
    observer_->SetRules(rule_engine_->rules());
    suggestions_.Set(rule_engine_->rules());
    auto names = [](const std::vector<std::string>& v) {
      return v.empty() ? std::string("none") : absl::StrJoin(v, ", ");
    };
    rules_summary =
        absl::StrCat(count, " rule(s) from ", options_.rules_path, " (added: ", names(r.added),
                     "; removed: ", names(r.removed), "; changed: ", names(r.changed), "; ",
                     r.alerts_kept, " alert(s) kept, ", r.alerts_resolved, " resolved)");
  }
  std::string policy_summary = "the default policy stays";
  if (!options_.policy_path.empty()) {
    remediation_->SetPolicy(*std::move(policy));
    policy_summary = absl::StrCat("policy from ", options_.policy_path);
  }
  ++reloads_ok_;
  spdlog::info("configuration reloaded: {}; {}", rules_summary, policy_summary);
  return absl::OkStatus();
}

void Controller::HousekeepingLoop() {
  // Ticks the rules (fleet-wide aggregates, alerts gone without data), and is the one writer of
  // registry rows: every change of the last second in one transaction, once more on the way out.
  absl::Time next_flush = absl::Now() + options_.registry_flush;
  absl::Time next_second = absl::Now();
  // Agents reconnect within seconds of a start: judge declarations only after that.
  absl::Time next_scraped_check = absl::Now() + absl::Seconds(10);
  while (true) {
    const bool stopping = stop_.WaitForNotificationWithTimeout(options_.rule_tick);
    if (!stopping) {
      rule_engine_->Tick();
      if (absl::Now() >= next_second) {
        next_second = absl::Now() + absl::Seconds(1);
        remediation_->Tick();
        incidents_->Tick();
        RefreshUsers();
        auditor_->PollAcceptance();
      }
      if (absl::Now() >= next_scraped_check) {
        next_scraped_check = absl::Now() + absl::Seconds(10);
        CheckScrapedMetrics();
      }
    }
    if (!stopping && absl::Now() < next_flush) {
      continue;
    }
    next_flush = absl::Now() + options_.registry_flush;
    FlushRegistry(/*everything=*/stopping);
    if (stopping) {
      return;
    }
  }
}

void Controller::CheckScrapedMetrics() {
  std::vector<v1::MetricDeclaration> declared;
  for (FleetState::Declared& d : fleet_.ConnectedDeclarations()) {
    declared.push_back(std::move(d.declaration));
  }
  const std::vector<Rule> rules = rule_engine_->rules();
  std::vector<std::string> undeclared = UndeclaredScrapedMetrics(rules, declared);
  std::vector<std::string> mismatched = KindMismatches(rules, declared);
  rules_undeclared_metric_ = undeclared.size();
  rules_kind_mismatch_ = mismatched.size();
  std::vector<std::string> findings = std::move(undeclared);
  findings.insert(findings.end(), mismatched.begin(), mismatched.end());
  for (const std::string& f : findings) {
    if (std::find(scraped_warned_.begin(), scraped_warned_.end(), f) == scraped_warned_.end()) {
      spdlog::warn("{}", f);
    }
  }
  scraped_warned_ = std::move(findings);
}

void Controller::RefreshUsers() {
  // `vigil-controller users disable|rotate` on the database, or sqlite3, while we run: a polled
  // version (moved by triggers on the users table) makes the change count within this period
  // plus one call, not after the token cache's 30 s.
  absl::StatusOr<bool> moved = control_service_->authenticator().Refresh();
  if (!moved.ok()) {
    static RateLimitedLog log(5, absl::Minutes(1));
    if (uint64_t suppressed = 0; log.Allow(absl::Now(), &suppressed)) {
      spdlog::error("cannot read the users version: {}; changes made to users outside this "
                    "controller take up to 30 s ({} similar failures not logged)",
                    moved.status().message(), suppressed);
    }
  } else if (*moved) {
    spdlog::info("users changed in the database: cached callers forgotten");
  }
}

void Controller::FlushRegistry(bool everything) {
  const uint32_t spread = everything ? 1 : RegistryFlushSpread(fleet_.connected_count());
  registry_spread_ = spread;
  std::vector<v1::AgentInfo> dirty = fleet_.TakeDirty(registry_flushes_++, spread);
  if (dirty.empty()) {
    return;
  }
  if (absl::Status s = store_->UpsertAgents(dirty); !s.ok()) {
    fleet_.MarkDirty(dirty);  // tried again with the next flush; nothing is acknowledged
    static RateLimitedLog log(5, absl::Minutes(1));
    if (uint64_t suppressed = 0; log.Allow(absl::Now(), &suppressed)) {
      spdlog::error("cannot save the agent registry ({} rows): {}; telemetry stays "
                    "unacknowledged until it is saved ({} similar failures not logged)",
                    dirty.size(), s.message(), suppressed);
    }
    return;
  }
  // Telemetry up to the stored sequences may leave the agents' spools now.
  for (const auto& [agent_id, sequence] : fleet_.MarkStored(dirty)) {
    v1::ControllerMessage ack;
    ack.mutable_ack()->set_sequence(sequence);
    agent_service_->SendTo(agent_id, std::move(ack));
  }
}

std::string Controller::MetricsPage() {
  std::string page;
  auto metric = [&page](absl::string_view name, absl::string_view type, absl::string_view help,
                        double value) {
    absl::StrAppendFormat(&page, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type,
                          name, value);
  };
  // Counted, not listed: a scrape copies no agent's row.
  metric("vigil_agents_connected", "gauge", "Agents with a live stream.",
         static_cast<double>(fleet_.connected_count()));
  metric("vigil_agents_known", "gauge", "Agents in the registry, connected or not.",
         static_cast<double>(fleet_.known_count()));
  metric("vigil_registry_flush_spread", "gauge",
         "Registry flushes between two acknowledgements of a streaming agent's telemetry (grows "
         "with the fleet: 1 up to 2,000 connected agents, at most 5).",
         static_cast<double>(registry_spread_.load()));
  metric("vigil_samples_ingested_total", "counter", "Telemetry samples applied since start.",
         static_cast<double>(fleet_.samples_ingested()));
  metric("vigil_agent_messages_total", "counter", "Messages received from agents since start.",
         static_cast<double>(agent_service_->messages_received()));
  const Checkpointer::Stats checkpoints = checkpointer_->stats();
  metric("vigil_audit_checkpoints_signed_total", "counter",
         "Audit checkpoints signed and stored since start.",
         static_cast<double>(checkpoints.signed_checkpoints));
  metric("vigil_audit_checkpoint_failures_total", "counter",
         "Audit checkpoints that could not be signed or stored (retried).",
         static_cast<double>(checkpoints.failures));
  metric("vigil_audit_checkpoint_log_failures_total", "counter",
         "Audit checkpoints the append-only log could not take.",
         static_cast<double>(checkpoints.log_failures));
  const std::optional<v1::AuditCheckpoint> latest_checkpoint = checkpointer_->latest();
  metric("vigil_audit_checkpoint_seq", "gauge", "The seq the newest audit checkpoint covers.",
         latest_checkpoint.has_value() ? static_cast<double>(latest_checkpoint->seq()) : 0);
  metric("vigil_audit_hold", "gauge",
         "1 while a detected rollback holds the timeline (vigil-controller audit accept-rollback).",
         auditor_->hold().has_value() ? 1 : 0);
  const FleetState::DropCounts dropped = fleet_.dropped();
  absl::StrAppend(&page,
                  "# HELP vigil_ingest_samples_dropped_total Samples dropped without refusing "
                  "their batch, by reason.\n# TYPE vigil_ingest_samples_dropped_total counter\n");
  absl::StrAppendFormat(&page, "vigil_ingest_samples_dropped_total{reason=\"non_finite\"} %d\n",
                        dropped.non_finite);
  absl::StrAppendFormat(&page, "vigil_ingest_samples_dropped_total{reason=\"out_of_order\"} %d\n",
                        dropped.out_of_order);
  const FleetState::LostCounts lost = fleet_.lost();
  absl::StrAppend(&page,
                  "# HELP vigil_telemetry_batches_lost_total Telemetry batches the controller will "
                  "never have, by reason: dropped or corrupt as agents reported, or missing from "
                  "the sequence with no report.\n"
                  "# TYPE vigil_telemetry_batches_lost_total counter\n");
  for (const auto& [reason, n] : {std::pair<const char*, uint64_t>{"agent_dropped",
                                                                   lost.agent_dropped},
                                  {"corrupt", lost.corrupt},
                                  {"sequence_gap", lost.sequence_gap}}) {
    absl::StrAppendFormat(&page, "vigil_telemetry_batches_lost_total{reason=\"%s\"} %d\n", reason,
                          n);
  }
  const AgentServiceImpl::Refusals refused = agent_service_->refusals();
  absl::StrAppend(&page,
                  "# HELP vigil_ingest_streams_refused_total Agent streams ended for breaking the "
                  "wire contract, by what they sent.\n"
                  "# TYPE vigil_ingest_streams_refused_total counter\n");
  for (const auto& [reason, n] : {std::pair<const char*, uint64_t>{"hello", refused.hello},
                                  {"telemetry", refused.telemetry},
                                  {"memory_budget", refused.memory_budget},
                                  {"diagnostics", refused.diagnostics},
                                  {"command_result", refused.command_result}}) {
    absl::StrAppendFormat(&page, "vigil_ingest_streams_refused_total{reason=\"%s\"} %d\n", reason,
                          n);
  }
  metric("vigil_ingest_streams_deferred_total", "counter",
         "New agent streams told to come back later (admission control) since start.",
         static_cast<double>(agent_service_->streams_refused_busy()));
  metric("vigil_ingest_mass_silence_ticks_total", "counter",
         "Watchdog ticks that found a quarter of the fleet silent at once and held off cutting "
         "them (the controller, not the agents, was behind).",
         static_cast<double>(agent_service_->mass_silence_ticks()));
  metric("vigil_ingest_storm_ticks_total", "counter",
         "Watchdog ticks during a storm of new agent streams, when silent streams were given four "
         "silence timeouts (gRPC's threads busy with handshakes read streaming agents late).",
         static_cast<double>(agent_service_->storm_ticks()));
  metric("vigil_ingest_queue_delay_seconds", "gauge",
         "How long the oldest agent message not yet handled has waited.",
         absl::ToDoubleSeconds(agent_service_->queue_delay()));
  metric("vigil_agents_evicted_total", "counter",
         "Gone agents whose series were freed since start.",
         static_cast<double>(agent_service_->agents_evicted()));
  metric("vigil_rule_evaluations_total", "counter", "Rule evaluations since start.",
         static_cast<double>(rule_engine_->evaluations()));
  metric("vigil_rule_fleet_evaluations_deferred_total", "counter",
         "Evaluations of fleet-wide rules put off to keep them within their share of the ingest "
         "thread.",
         static_cast<double>(rule_engine_->aggregates_deferred()));
  metric("vigil_rule_fleet_evaluation_seconds", "gauge",
         "What the last evaluation of the fleet-wide rules took.",
         absl::ToDoubleSeconds(rule_engine_->aggregate_cost()));
  metric("vigil_rules_loaded", "gauge", "Alert rules in force.",
         static_cast<double>(rule_engine_->rule_count()));
  std::set<std::string> declared_names;
  for (const FleetState::Declared& d : fleet_.ConnectedDeclarations()) {
    declared_names.insert(d.declaration.name());
  }
  metric("vigil_declared_metrics", "gauge",
         "Scraped metrics (outside the built-in schema) declared by connected agents.",
         static_cast<double>(declared_names.size()));
  metric("vigil_rules_scraped_metric_undeclared", "gauge",
         "Rules on a scraped metric that no connected agent declares (checked every 10 s).",
         static_cast<double>(rules_undeclared_metric_.load()));
  metric("vigil_rules_scraped_metric_kind_mismatch", "gauge",
         "Rules using a scraped metric as the other kind than an agent declares (never fire).",
         static_cast<double>(rules_kind_mismatch_.load()));
  absl::StrAppend(&page,
                  "# HELP vigil_config_reloads_total Reloads of rules and policy (SIGHUP) by "
                  "result.\n# TYPE vigil_config_reloads_total counter\n");
  absl::StrAppendFormat(&page, "vigil_config_reloads_total{result=\"ok\"} %d\n",
                        reloads_ok_.load());
  absl::StrAppendFormat(&page, "vigil_config_reloads_total{result=\"failed\"} %d\n",
                        reloads_failed_.load());
  size_t firing = 0, pending = 0, stale = 0;
  for (const v1::Alert& a : incidents_->ActiveAlerts()) {
    firing += a.state() == v1::FIRING ? 1 : 0;
    pending += a.state() == v1::PENDING ? 1 : 0;
    stale += a.state() == v1::STALE ? 1 : 0;
  }
  absl::StrAppend(&page,
                  "# HELP vigil_alerts Alerts by state (rules and Alertmanager).\n"
                  "# TYPE vigil_alerts gauge\n");
  absl::StrAppendFormat(&page, "vigil_alerts{state=\"firing\"} %d\n", firing);
  absl::StrAppendFormat(&page, "vigil_alerts{state=\"pending\"} %d\n", pending);
  absl::StrAppendFormat(&page, "vigil_alerts{state=\"stale\"} %d\n", stale);
  metric("vigil_incidents_active", "gauge", "Incidents not yet resolved.",
         static_cast<double>(incidents_->active_incidents()));
  const TimelineWriter::Stats writes = writer_->stats();
  absl::StrAppend(&page,
                  "# HELP vigil_store_commit_seconds Time to commit one group of timeline "
                  "writes (durable on return).\n# TYPE vigil_store_commit_seconds summary\n");
  for (double q : {0.5, 0.9, 0.99}) {
    absl::StrAppendFormat(&page, "vigil_store_commit_seconds{quantile=\"%g\"} %.9g\n", q,
                          writes.commit_seconds.empty() ? 0.0 : writes.commit_seconds.Quantile(q));
  }
  absl::StrAppendFormat(&page, "vigil_store_commit_seconds_sum %.9g\n", writes.commit_seconds.sum());
  absl::StrAppendFormat(&page, "vigil_store_commit_seconds_count %d\n",
                        writes.commit_seconds.count());
  metric("vigil_timeline_events_total", "counter", "Timeline events stored since start.",
         static_cast<double>(writes.events));
  metric("vigil_store_commits_total", "counter",
         "Store transactions of the timeline writer (one per group of changes).",
         static_cast<double>(writes.commits));
  absl::StrAppend(&page,
                  "# HELP vigil_store_write_failures_total Store transactions that failed and "
                  "changed nothing, by cause.\n# TYPE vigil_store_write_failures_total counter\n");
  for (const char* cause : {"resource_exhausted", "unavailable", "data_loss", "internal"}) {
    auto it = writes.failures_by_cause.find(cause);
    absl::StrAppendFormat(&page, "vigil_store_write_failures_total{cause=\"%s\"} %d\n", cause,
                          it == writes.failures_by_cause.end() ? 0 : it->second);
  }
  absl::StrAppend(&page,
                  "# HELP vigil_breaker_refusals_total Proposals and last approvals refused by "
                  "an action's circuit breaker since start, by action.\n"
                  "# TYPE vigil_breaker_refusals_total counter\n");
  for (const auto& [action, count] : remediation_->BreakerRefusals()) {
    absl::StrAppendFormat(&page, "vigil_breaker_refusals_total{action=\"%s\"} %d\n", action,
                          count);
  }
  metric("vigil_store_writable", "gauge",
         "1 while the last store write succeeded, 0 while failing.", writer_->failing() ? 0 : 1);
  const storage::StoreLogHealth log = store_->LogHealth();
  metric("vigil_store_log_bytes", "gauge",
         "The database's write-ahead log after the last commit (long: a reader on an old "
         "snapshot, or checkpoints failing).",
         static_cast<double>(log.log_bytes));
  metric("vigil_store_checkpoints_total", "counter",
         "Passes that copied the write-ahead log into the database.",
         static_cast<double>(log.checkpoints));
  metric("vigil_store_checkpoint_failures_total", "counter",
         "Checkpoint passes that failed (the log grows until one succeeds).",
         static_cast<double>(log.checkpoint_failures));
  metric("vigil_store_writer_waits_total", "counter",
         "Writes that waited for a checkpoint because the log had grown too long.",
         static_cast<double>(log.writer_waits));
  metric("vigil_alerts_waiting_for_store", "gauge",
         "Rule alerts kept in order until the store takes writes again.",
         static_cast<double>(incidents_->alert_backlog()));
  metric("vigil_alerts_dropped_total", "counter",
         "Rule alerts dropped from a full backlog while the store refused writes.",
         static_cast<double>(incidents_->alerts_dropped()));
  const WatchHub::Stats watch = control_service_->watch_stats();
  metric("vigil_watch_streams_open", "gauge", "Open `vigil watch` streams.",
         static_cast<double>(watch.open));
  metric("vigil_watch_streams_behind_total", "counter",
         "Watch streams ended since start because the watcher fell behind (told where to resume).",
         static_cast<double>(watch.ended_behind));
  metric("vigil_watch_buffered_bytes", "gauge",
         "Bytes of timeline events waiting to be sent to watchers, all streams.",
         static_cast<double>(watch.buffered_bytes));
  const ReadPool::Stats reads = control_service_->read_stats();
  metric("vigil_api_reads_queued", "gauge",
         "API store reads waiting for one of the controller's reader threads.",
         static_cast<double>(reads.queued));
  metric("vigil_api_reads_refused_total", "counter",
         "API store reads refused (RESOURCE_EXHAUSTED) because the read queue was full.",
         static_cast<double>(reads.refused));
  metric("vigil_uptime_seconds", "gauge", "Seconds since the controller started.",
         absl::ToDoubleSeconds(clock_->Now() - started_at_));
  webhook_->AppendMetrics(&page);
  if (notifier_ != nullptr) {
    notifier_->AppendMetrics(&page);
  }
  if (http_ != nullptr) {
    const http::HttpServer::Stats http = http_->stats();
    metric("vigil_http_connections_accepted_total", "counter",
           "Connections accepted on the HTTP port.",
           static_cast<double>(http.connections_accepted));
    metric("vigil_http_connections_evicted_total", "counter",
           "Idle HTTP connections closed to make room at the connection cap.",
           static_cast<double>(http.connections_evicted));
    metric("vigil_http_connections_refused_total", "counter",
           "HTTP connections answered 503 at the cap with nothing idle to close.",
           static_cast<double>(http.connections_refused));
    metric("vigil_http_timeouts_total", "counter",
           "HTTP connections that missed a request or response deadline.",
           static_cast<double>(http.timeouts));
    metric("vigil_http_tls_handshake_failures_total", "counter",
           "TLS handshakes on the HTTP port that failed.",
           static_cast<double>(http.tls_handshake_failures));
  }
  if (fleet_endpoint_ != nullptr) {
    fleet_endpoint_->AppendMetrics(&page);
  }
  if (review_ != nullptr) {
    review_->AppendMetrics(&page);
  }
  return page;
}

absl::Status Controller::StoreExternalAlerts(std::vector<v1::Alert> alerts) {
  // The webhook answers only once the alerts are on disk (or could not be): Alertmanager resends
  // on anything but 2xx.
  auto stored = std::make_shared<absl::Notification>();
  auto result = std::make_shared<absl::Status>();
  incidents_->OnExternalAlerts(std::move(alerts), [stored, result](absl::Status status) {
    *result = std::move(status);
    stored->Notify();
  });
  if (!stored->WaitForNotificationWithTimeout(absl::Seconds(10))) {
    return absl::UnavailableError("the store did not answer within 10 s");
  }
  return *result;
}

absl::StatusOr<v1::VerifyAuditResponse> Controller::AuditForExport(const std::string& caller) {
  // A checkpoint of the head first, so the one the report names covers every exported event.
  if (absl::StatusOr<v1::AuditCheckpoint> signed_head = checkpointer_->CheckpointNow();
      !signed_head.ok() && signed_head.status().code() != absl::StatusCode::kNotFound) {
    spdlog::warn("no checkpoint before an export: {}", signed_head.status().message());
  }
  v1::VerifyAuditRequest full;
  full.set_full(true);
  return auditor_->Verify(full, caller);
}

std::string AuditKeyPath(const ControllerOptions& options) {
  if (!options.audit_key_path.empty()) {
    return options.audit_key_path;
  }
  const size_t slash = options.db_path.rfind('/');
  return absl::StrCat(slash == std::string::npos ? "." : options.db_path.substr(0, slash),
                      "/controller-audit.key");
}

std::string GrpcExperimentsForController(const char* from_environment) {
  constexpr absl::string_view kVariableReads = "-tcp_read_chunks";
  if (from_environment == nullptr || *from_environment == '\0') {
    return std::string(kVariableReads);
  }
  for (absl::string_view experiment : absl::StrSplit(from_environment, ',')) {
    experiment = absl::StripAsciiWhitespace(experiment);
    if (absl::StartsWith(experiment, "-")) {
      experiment.remove_prefix(1);
    }
    if (experiment == kVariableReads.substr(1)) {
      return from_environment;  // the operator's choice stands
    }
  }
  return absl::StrCat(from_environment, ",", kVariableReads);
}

std::string SigningKeyPath(const ControllerOptions& options) {
  if (!options.signing_key_path.empty()) {
    return options.signing_key_path;
  }
  const size_t slash = options.db_path.rfind('/');
  return absl::StrCat(slash == std::string::npos ? "." : options.db_path.substr(0, slash),
                      "/controller-signing.key");
}

absl::Status CheckDatabaseEvidence(const std::string& db_path, const std::string& key_path,
                                   bool init) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(db_path, ec)) {
    return absl::OkStatus();
  }
  std::vector<std::string> evidence;
  for (const std::string& file :
       {db_path + "-wal", db_path + "-shm", db_path + ".lock", key_path}) {
    if (fs::exists(file, ec)) {
      evidence.push_back(file);
    }
  }
  if (!evidence.empty() && !init) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database ", db_path, " is missing, but ", absl::StrJoin(evidence, ", "),
        " show(s) one existed: its incidents and audit trail would be lost. Restore it from a "
        "backup, or pass --init to start a new, empty database on purpose"));
  }
  if (!evidence.empty()) {
    spdlog::warn("creating a new, empty database at {} (--init; {} left from an earlier one)",
                 db_path, absl::StrJoin(evidence, ", "));
  } else {
    spdlog::info("creating a new database at {}", db_path);
  }
  return absl::OkStatus();
}

FamilyHelp Controller::FleetFamilyHelp() {
  auto declared = std::make_shared<absl::flat_hash_map<std::string, std::string>>();
  for (const FleetState::Declared& d : fleet_.ConnectedDeclarations()) {
    (*declared)[d.declaration.name()] =
        d.declaration.per_second_rate()
            ? absl::StrCat(d.declaration.help(),
                           " (a counter at its source, sent as its per-second rate over the "
                           "collection interval: a gauge here)")
            : d.declaration.help();
  }
  return [declared](absl::string_view name) -> std::string {
    if (const MetricInfo* info = FindMetric(name); info != nullptr) {
      return std::string(info->help);
    }
    auto it = declared->find(name);
    return it == declared->end() ? "" : it->second;
  };
}

absl::Status Controller::AuthorizeWebhook(const http::HttpRequest& request) {
  constexpr absl::string_view kWhat = "posting Alertmanager alerts";
  if (const std::string& header = request.Header("authorization"); !header.empty()) {
    ASSIGN_OR_RETURN(Caller caller, control_service_->authenticator().Authenticate(header));
    return Authenticator::Require(caller, Role::kResponder, kWhat);
  }
  if (!request.client_cn.empty()) {
    ASSIGN_OR_RETURN(Caller caller,
                     control_service_->authenticator().AuthenticateCertificate(request.client_cn));
    return Authenticator::Require(caller, Role::kResponder, kWhat);
  }
  return absl::UnauthenticatedError(
      "the webhook wants credentials: 'Authorization: Bearer TOKEN' with a responder's token "
      "(vigil-controller users add alertmanager --role responder)"
      " or a client certificate whose CN is such a user");
}

}  // namespace vigil::controller
