// vigil-controller: holds agent streams, evaluates rules, keeps incidents and their timelines.
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <tuple>

#include "common/logging.h"
#include "common/mutex_checks.h"
#include "common/sd_notify.h"
#include "common/transport.h"
#include "common/yaml_util.h"
#include "controller/audit/audit_command.h"
#include "controller/auth/auth.h"
#include "controller/auth/users_command.h"
#include "controller/config/config_check.h"
#include "controller/config/controller_config.h"
#include "controller/controller.h"
#include "controller/rules/rule.h"
#include "storage/sqlite/sqlite_store.h"

namespace {

// Every agent holds one connection, so a fleet of 10,000 needs as many descriptors; the soft
// limit is often 1,024 where the hard one allows far more. Raised to the hard limit, and said
// when even that is low.
void RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return;
  }
  // A privileged controller may raise the hard limit too (a reconnect storm briefly holds old
  // connections beside new ones); otherwise the hard limit is as far as it goes.
  constexpr rlim_t kWanted = 1 << 20;
  if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < kWanted) {
    rlimit raised{.rlim_cur = kWanted, .rlim_max = kWanted};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      return;
    }
  }
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      getrlimit(RLIMIT_NOFILE, &limit);
    }
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < 4'096) {
    spdlog::warn("open file limit is {}: at most about that many agents can connect (raise "
                 "LimitNOFILE= or `ulimit -n` for a larger fleet)",
                 limit.rlim_cur);
  }
}

// `vigil-controller check-rules FILE...`: like promtool, every problem with file and line.
int CheckRules(const std::vector<std::string>& files) {
  int errors = 0;
  for (const std::string& file : files) {
    vigil::controller::RuleFile parsed = vigil::controller::LoadRuleFile(file);
    for (const std::string& e : parsed.errors) {
      std::cerr << e << '\n';
    }
    errors += static_cast<int>(parsed.errors.size());
    for (const std::string& note : parsed.notes) {
      std::cout << note << '\n';
    }
    if (parsed.errors.empty()) {
      std::cout << file << ": " << parsed.rules.size() << " rule(s), OK\n";
    } else {
      std::cerr << file << ": " << parsed.errors.size() << " error(s)\n";
    }
  }
  return errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  vigil::UseReleaseMutexChecks();
#if !VIGIL_JEMALLOC
  // On glibc's malloc (a build with -DVIGIL_JEMALLOC=OFF): glibc gives each thread that finds the
  // heap busy an arena of its own, up to 8 per core, and each keeps its freed pages: with gRPC's
  // threads touching every agent's buffers that is about a tenth of the controller's memory at
  // 2,500 agents (98.8 -> 90.5 KiB per agent with 2, bench/scale.sh on 2 cores). One per core
  // suffices for the threads that can run at once. jemalloc has arenas of its own.
  mallopt(M_ARENA_MAX, static_cast<int>(std::max(2u, std::thread::hardware_concurrency())));
#endif
  // Read by gRPC at its first call, so before any.
  setenv("GRPC_EXPERIMENTS",
         vigil::controller::GrpcExperimentsForController(getenv("GRPC_EXPERIMENTS")).c_str(), 1);
  // Before any thread: taken out of the environment so nothing the controller starts inherits it.
  const vigil::SdNotifier notifier = vigil::SdNotifier::FromEnvironment();
  // Everything the controller writes (database, keys, the data folder) is its own alone. The
  // store and the key code set their files' modes themselves too: SQLite gives its -wal and
  // -shm files the database's mode, whatever the umask.
  umask(077);
  CLI::App app{
      "vigil-controller: fleet telemetry, alert rules, incidents and approved remediation"};
  app.set_version_flag("--version", "vigil-controller " VIGIL_VERSION,
                       "print the version and exit");
  vigil::controller::ControllerOptions options;
  std::string log_level = "info";
  app.add_option("--listen", options.listen,
                 "gRPC address for the CLI, and for agents without --agent-listen (HOST:PORT)");
  app.add_option("--agent-listen", options.agent_listen,
                 "a second gRPC address for agents (HOST:PORT), whose accept queue is kept short "
                 "(--agent-listen-backlog) so that a reconnect storm of agents waits in their own "
                 "connection retries and the CLI on --listen keeps answering");
  app.add_option("--agent-listen-backlog", options.agent_listen_backlog,
                 "connections --agent-listen queues before the controller accepts them; the "
                 "kernel caps it at net.core.somaxconn (64)")
      ->check(CLI::Range(1, 65535));
  app.add_option("--db", options.db_path,
                 "SQLite database file (created with its folder; default /var/lib/vigil/vigil.db)");
  app.add_option("--http-listen", options.http_listen,
                 "HTTP address for /metrics, the Alertmanager webhook and the review page "
                 "(/review; over plain HTTP on loopback only); \"off\": none");
  app.add_option("--http-tls-cert", options.http_tls_cert,
                 "TLS certificate chain (PEM) for the HTTP port; with --http-tls-key");
  app.add_option("--http-tls-key", options.http_tls_key, "TLS key (PEM) for the HTTP port");
  app.add_option("--http-tls-ca", options.http_tls_ca,
                 "CA (PEM) for client certificates on the HTTP port; a verified certificate's CN "
                 "is a user name (e.g. Alertmanager with --role responder)");
  app.add_option("--webhook-max-alerts", options.webhook.max_alerts_per_request,
                 "alerts taken in one Alertmanager notification; more: 413 (1000)")
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}));
  app.add_option("--webhook-max-alerts-per-minute", options.webhook.max_alerts_per_minute,
                 "alerts taken from Alertmanager per minute; more: 503 with Retry-After (10000)")
      ->check(CLI::Range(size_t{1}, size_t{100'000'000}));
  app.add_option("--fleet-metrics-token-file", options.fleet_metrics_token_file,
                 "file holding the bearer token Prometheus sends to scrape /fleet/metrics on the "
                 "HTTP port; without it the fleet endpoint is off")
      ->check(CLI::ExistingFile);
  app.add_option("--rules", options.rules_path,
                 "alert rule file (YAML); without it, the built-in rules")
      ->check(CLI::ExistingFile);
  std::string correlation_window = "10m";
  app.add_option("--correlation-window", correlation_window,
                 "how long an incident keeps taking related alerts after its last one (10m)");
  app.add_option("--policy", options.policy_path,
                 "approval policy (YAML); without it, the defaults (two approvers for "
                 "pg_terminate_backend and redis_flushdb)")
      ->check(CLI::ExistingFile);
  app.add_option("--signing-key", options.signing_key_path,
                 "Ed25519 key that signs commands (created when missing; default: next to --db)");
  app.add_option("--audit-key", options.audit_key_path,
                 "Ed25519 key that signs audit checkpoints (created when missing; default: next "
                 "to --db; on another volume, an edit of the database needs both)");
  std::string checkpoint_every = "10s";
  app.add_option("--checkpoint-every", checkpoint_every,
                 "sign the audit chain's head at least this often while it grows (10s)");
  app.add_option("--checkpoint-every-events", options.checkpoints.every_events,
                 "and after this many events (1000)")
      ->check(CLI::Range(size_t{1}, size_t{100'000'000}));
  app.add_option("--checkpoint-log", options.checkpoints.log_path,
                 "append every audit checkpoint to this file (a witness on another volume or a "
                 "log shipper's input)");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  // Telemetry time and memory (the contract in DESIGN.md): durations like 30s, 24h.
  std::string max_skew = "30s", max_age = "24h", evict_after = "1h", result_patience = "1h",
              admission_delay = "500ms";
  app.add_flag("--init", options.init,
               "start a new, empty database even though files beside --db show one existed");
  app.add_option("--result-patience", result_patience,
                 "how long past its deadline a command may stay without a result before its "
                 "outcome is declared unknown (1h)");
  app.add_option("--telemetry-max-skew", max_skew,
                 "refuse telemetry stamped further ahead of this clock (30s)");
  app.add_option("--telemetry-max-age", max_age,
                 "refuse telemetry older than this; replays after an outage are younger (24h)");
  app.add_option("--evict-after", evict_after,
                 "free the series of agents disconnected this long (1h)");
  app.add_option("--admission-queue", options.admission_queue,
                 "new agent streams that may wait for the ingest thread; beyond, they are told "
                 "when to come back (RESOURCE_EXHAUSTED with retry-after-ms) (512)")
      ->check(CLI::Range(1, 1'000'000));
  app.add_option("--admission-max-delay", admission_delay,
                 "admit no new agent stream while queued telemetry waits longer than this (500ms)");
  app.add_option("--ingest-nice", options.ingest_nice,
                 "run the ingest thread this many nice levels below the threads that answer the "
                 "CLI and read agents, so they come first when the controller is saturated; 0 "
                 "keeps them equal (5)")
      ->check(CLI::Range(0, 19));
  vigil::AddTransportFlags(app, options.transport);
  std::string config_path;
  app.add_option("--config", config_path,
                 "settings file (YAML; keys are the long flags in snake_case, flags win); default "
                 "/etc/vigil/controller.yaml when it exists; --config '' for none");
  bool check_config = false;
  app.add_flag("--check-config", check_config,
               "validate the settings, rule file, policy, TLS files and signing key, print FILE: OK "
               "or every error, and exit (0 valid, 1 not); creates and binds nothing");

  std::vector<std::string> rule_files;
  CLI::App* check = app.add_subcommand("check-rules", "validate rule files and exit");
  check->add_option("FILE", rule_files, "rule files")->required();
  // users add|list|disable|enable|rotate, run on the database (controller/auth/users_command.h).
  vigil::controller::UsersCommand users_command;
  CLI::App* users = vigil::controller::AddUsersCommands(app, &options.db_path, &users_command);
  // audit accept-rollback, run on the database (controller/audit/audit_command.h).
  vigil::controller::AuditCommand audit_command;
  CLI::App* audit = vigil::controller::AddAuditCommands(app, &options.db_path, &audit_command);
  bool print_defaults = false;
  CLI::App* defaults =
      app.add_subcommand("default-rules", "print the built-in rules (a starting point)");
  defaults->callback([&] { print_defaults = true; });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (check->parsed()) {
    return CheckRules(rule_files);
  }
  if (users->parsed()) {
    return vigil::controller::RunUsersCommand(*users, users_command, options.db_path,
                                              absl::ToUnixMillis(absl::Now()), std::cout,
                                              std::cerr);
  }
  if (audit->parsed()) {
    return vigil::controller::RunAuditCommand(*audit, audit_command, options.db_path,
                                              absl::ToUnixMillis(absl::Now()), std::cout,
                                              std::cerr);
  }
  if (print_defaults) {
    std::cout << vigil::controller::DefaultRulesYaml();
    return 0;
  }
  for (const auto& [flag, text, out] :
       {std::tuple<const char*, const std::string&, absl::Duration*>{
            "--correlation-window", correlation_window, &options.incidents.correlation_window},
        {"--telemetry-max-skew", max_skew, &options.ingest_limits.max_future_skew},
        {"--telemetry-max-age", max_age, &options.ingest_limits.max_age},
        {"--evict-after", evict_after, &options.evict_after},
        {"--admission-max-delay", admission_delay, &options.admission_max_delay},
        {"--checkpoint-every", checkpoint_every, &options.checkpoints.every},
        {"--result-patience", result_patience, &options.remediation.result_patience}}) {
    absl::StatusOr<absl::Duration> parsed = vigil::ParseDurationText(text);
    if (!parsed.ok()) {
      std::cerr << flag << ": " << parsed.status().message() << '\n';
      return 2;
    }
    *out = *parsed;
  }
  // The file fills in what the command line left at its default.
  vigil::controller::ControllerSettings settings;
  settings.options = std::move(options);
  settings.log_level = log_level;
  absl::StatusOr<std::string> config_file =
      vigil::controller::ChooseControllerConfig(app.count("--config") > 0, config_path);
  if (config_file.ok() && !config_file->empty()) {
    absl::Status loaded = vigil::controller::LoadControllerConfig(
        *config_file, [&](absl::string_view flag) { return app.count(std::string(flag)) > 0; },
        settings);
    if (!loaded.ok()) {
      config_file = loaded;
    }
  }
  if (!config_file.ok()) {
    const std::string message(config_file.status().message());
    std::cerr << message << '\n';
    if (check_config) {
      std::cerr << (app.count("--config") > 0 ? config_path
                                               : vigil::controller::kDefaultControllerConfigPath)
                << ": " << std::count(message.begin(), message.end(), '\n') + 1
                << " error(s)\n";
      return 1;
    }
    std::cerr << "vigil-controller: bad config, not started\n";
    return 2;
  }
  if (settings.options.http_listen == "off") {
    settings.options.http_listen.clear();
  }
  if (check_config) {
    const std::string source = config_file->empty() ? "(command line)" : *config_file;
    // Quiet: the verdict is the output. (Checks say nothing on success.)
    vigil::SetupLogging("vigil-controller", "error");
    const std::vector<std::string> errors =
        vigil::controller::CheckControllerSettings(settings);
    for (const std::string& e : errors) {
      std::cerr << e << '\n';
    }
    if (!errors.empty()) {
      std::cerr << source << ": " << errors.size() << " error(s)\n";
      return 1;
    }
    std::cout << source << ": OK\n";
    return 0;
  }
  options = std::move(settings.options);
  log_level = settings.log_level;
  vigil::SetupLogging("vigil-controller", log_level);
  if (!config_file->empty()) {
    spdlog::info("settings from {} (flags given on the command line win)", *config_file);
  }
  RaiseOpenFileLimit();

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);  // reload rules and policy
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  vigil::controller::Controller controller(options, vigil::RealClock::Get());
  if (absl::Status s = controller.Start(); !s.ok()) {
    spdlog::error("cannot start: {}", s.message());
    return 1;
  }
  notifier.Ready();
  // Signals are taken by this thread (sigwait), so reloading and stopping are ordinary code.
  std::thread watcher([&] {
    while (true) {
      int sig = 0;
      sigwait(&signals, &sig);
      if (sig == SIGHUP) {
        spdlog::info("SIGHUP: reloading rules and policy");
        notifier.Reloading();
        controller.Reload().IgnoreError();  // logged and counted by Reload
        notifier.Ready();  // the manager waits for it whatever came of the reload
        continue;
      }
      spdlog::info("signal {}: stopping", sig);
      notifier.Stopping();
      controller.Stop();
      return;
    }
  });
  controller.Wait();
  watcher.join();
  return 0;
}
