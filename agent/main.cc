// vigil-agent: collects host and service telemetry and streams it to the controller.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "agent/agent.h"
#include "agent/agent_config.h"
#include "agent/collector_runner.h"
#include "agent/state_migration.h"
#include "common/logging.h"
#include "common/mutex_checks.h"
#include "common/sd_notify.h"
#include "common/tls_files.h"
#include "common/transport.h"
#include "common/yaml_util.h"

namespace {

int g_signal_pipe[2] = {-1, -1};

extern "C" void OnSignal(int sig) {
  const int saved = errno;
  const unsigned char byte = static_cast<unsigned char>(sig);
  // Nothing may be logged from a signal handler. A full pipe means signals are already waiting
  // for the watcher, which is all this write is for.
  (void)!write(g_signal_pipe[1], &byte, 1);
  errno = saved;
}

// The TLS files in use: each --tls-* flag, else the config's `tls:` key. An explicit --insecure
// without --tls-* flags means plain text, whatever the config names.
void ResolveTls(const vigil::TransportFlags& flags, const vigil::agent::AgentConfig& config,
                vigil::TransportFlags& tls, vigil::TlsFileNames& names) {
  tls = flags;
  names = vigil::TlsFileNames{};
  const bool any_flag = !flags.ca.empty() || !flags.cert.empty() || !flags.key.empty();
  if (flags.insecure && !any_flag) {
    if (!config.tls.ca.empty() || !config.tls.cert.empty()) {
      spdlog::warn("--insecure: the TLS files the config names are not used");
    }
    return;
  }
  for (const auto& [flag, from_config, name, config_name] :
       {std::tuple<std::string*, const std::string&, std::string*, const std::string&>{
            &tls.ca, config.tls.ca, &names.ca, config.tls_names.ca},
        {&tls.cert, config.tls.cert, &names.cert, config.tls_names.cert},
        {&tls.key, config.tls.key, &names.key, config.tls_names.key}}) {
    if (flag->empty() && !from_config.empty()) {
      *flag = from_config;
      *name = config_name;
    }
  }
}

// --check-config: everything a start would read, and nothing it would create or connect to.
int CheckConfig(const std::string& source, const vigil::agent::AgentConfig& config,
                const std::string& controller, const vigil::TransportFlags& tls,
                const vigil::TlsFileNames& names) {
  std::vector<std::string> errors;
  vigil::agent::ActionRegistry action_registry;
  vigil::agent::RegisterBuiltinActions(action_registry);
  const std::unique_ptr<vigil::agent::CommandRunner> runner = vigil::agent::NewProcessRunner();
  vigil::agent::ActionContext context{.runner = runner.get(),
                                      .service_manager = config.service_manager,
                                      .postgres_dsn = config.postgres_dsn,
                                      .redis_address = config.redis_address};
  if (auto actions = vigil::agent::BuildActions(config.actions, action_registry, context, source);
      !actions.ok()) {
    errors.emplace_back(actions.status().message());
  }
  if (absl::Status s = vigil::CheckClientTransport(tls, names, controller); !s.ok()) {
    errors.emplace_back(s.message());
  }
  if (!errors.empty()) {
    for (const std::string& e : errors) {
      std::cerr << e << '\n';
    }
    std::cerr << source << ": " << errors.size() << " error(s)\n";
    return 1;
  }
  std::cout << source << ": OK\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  vigil::UseReleaseMutexChecks();
  // Before any thread: taken out of the environment so the commands the agent runs do not see it.
  const vigil::SdNotifier notifier = vigil::SdNotifier::FromEnvironment();
  // The state folder and the command journal are the agent's alone. (Commands it runs inherit
  // this mask; services are started by their manager, which sets its own.)
  umask(077);
  CLI::App app{
      "vigil-agent: streams host, PostgreSQL, Redis and nginx telemetry to vigil-controller"};
  app.set_version_flag("--version", "vigil-agent " VIGIL_VERSION, "print the version and exit");
  std::string controller, config_path, id, interval_text, sense_text, log_level = "info";
  app.add_option("--controller", controller,
                 "controller address HOST:PORT (default: the config's, or 127.0.0.1:7443)");
  app.add_option("--config", config_path, "agent config file (YAML)");
  app.add_option("--id", id, "agent id (default: the config's id, or the host name)");
  app.add_option("--interval", interval_text,
                 "collection interval, e.g. 1s (default: the config's, or 1s)");
  app.add_option("--sense-every", sense_text,
                 "how often the thresholds the controller sends are checked between rounds, "
                 "e.g. 100ms (default); 0 turns sensing off");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  bool aligned_rounds = false;
  app.add_flag("--aligned-rounds", aligned_rounds,
               "collect at the same instant of every interval as every other agent, instead of "
               "at this agent's own phase within it (from its id), which spreads a fleet's "
               "rounds over the interval");
  bool init_journal = false;
  app.add_flag("--init-journal", init_journal,
               "start a new command journal where the old one is missing (after a restore "
               "or a deliberate reset); without it a missing journal stops the agent");
  vigil::TransportFlags tls_flags;
  vigil::AddTransportFlags(app, tls_flags);
  bool check_config = false;
  app.add_flag("--check-config", check_config,
               "load and validate the config (collectors, actions, controller key, TLS files), "
               "print FILE: OK or every error, and exit (0 valid, 1 not); starts nothing");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (check_config) {
    // Messages only: no log lines around the verdict.
    log_level = "warn";
  }
  // Signals are taken by a thread of ours, so stopping and reloading are ordinary code: the
  // handler only writes the signal's number to a pipe. (A blocked mask and sigwait are not
  // enough: gRPC starts threads of its own with every signal unblocked, and SIGHUP landing on
  // one of them would end the process.)
  if (pipe2(g_signal_pipe, O_CLOEXEC) != 0) {
    std::perror("vigil-agent: pipe2");
    return 1;
  }
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    sigaction(sig, &action, nullptr);
  }
  vigil::SetupLogging("vigil-agent", log_level);

  vigil::agent::CollectorRegistry registry;
  vigil::agent::RegisterBuiltinCollectors(registry);
  auto config = config_path.empty() ? vigil::agent::DefaultAgentConfig(registry)
                                    : vigil::agent::LoadAgentConfig(config_path, registry);
  const std::string source = config_path.empty() ? "(built-in default config)" : config_path;
  if (!config.ok()) {
    if (check_config) {
      std::cerr << config.status().message() << '\n' << source << ": 1 error(s)\n";
      return 1;
    }
    spdlog::error("bad config: {}", config.status().message());
    return 2;
  }
  if (!id.empty()) {
    // The default journal is named after the id: follow the --id override.
    const std::string old_spool = vigil::agent::DefaultSpoolDir(config->journal_path, config->id);
    if (config->journal_path == vigil::agent::DefaultJournalPath(config->id)) {
      config->journal_path = vigil::agent::DefaultJournalPath(id);
    }
    if (config->spool_dir == old_spool) {
      config->spool_dir = vigil::agent::DefaultSpoolDir(config->journal_path, id);
    }
    config->id = id;
  }
  vigil::agent::AgentOptions options;
  options.controller = !controller.empty()           ? controller
                       : !config->controller.empty() ? config->controller
                                                     : "127.0.0.1:7443";
  options.interval = config->interval;
  options.init_journal = init_journal;
  options.aligned_rounds = aligned_rounds;
  if (!interval_text.empty()) {
    auto interval = vigil::ParseDurationText(interval_text);
    if (!interval.ok() || *interval < absl::Milliseconds(100)) {
      spdlog::error("--interval '{}': want a duration of at least 100ms such as 1s", interval_text);
      return 2;
    }
    options.interval = *interval;
  }
  if (!sense_text.empty()) {
    auto every = sense_text == "0" ? absl::StatusOr<absl::Duration>(absl::ZeroDuration())
                                   : vigil::ParseDurationText(sense_text);
    if (!every.ok() || (*every != absl::ZeroDuration() && *every < absl::Milliseconds(20))) {
      spdlog::error("--sense-every '{}': want 0 or a duration of at least 20ms such as 100ms",
                    sense_text);
      return 2;
    }
    options.sense_every = *every;
  }
  vigil::TransportFlags tls;
  vigil::TlsFileNames tls_names;
  ResolveTls(tls_flags, *config, tls, tls_names);
  if (check_config) {
    return CheckConfig(source, *config, options.controller, tls, tls_names);
  }
  // Before anything opens the journal, results or spool: an upgrade from the old default place.
  if (config->journal_path == vigil::agent::DefaultJournalPath(config->id)) {
    if (absl::Status s =
            vigil::agent::MoveLegacyAgentState(vigil::agent::kLegacyAgentStateDir, *config);
        !s.ok()) {
      spdlog::error("{}", s.message());
      return 1;
    }
  }
  auto credentials = vigil::MakeClientCredentials(tls, options.controller);
  if (!credentials.ok()) {
    spdlog::error("{}", credentials.status().message());
    return 2;
  }
  options.credentials = *credentials;
  if (tls.ca.empty()) {
    // Over mutual TLS the controller takes the id only if the certificate names it; here nothing
    // is checked, so say so.
    spdlog::warn("no TLS (--insecure): plain text to {}, for development on loopback only",
                 options.controller);
  }

  // Actions are checked now, so a bad action option stops the agent at start, not at 3 a.m.
  vigil::agent::ActionRegistry action_registry;
  vigil::agent::RegisterBuiltinActions(action_registry);
  const std::unique_ptr<vigil::agent::CommandRunner> runner = vigil::agent::NewProcessRunner();
  vigil::agent::ActionContext action_context{.runner = runner.get(),
                                             .service_manager = config->service_manager,
                                             .postgres_dsn = config->postgres_dsn,
                                             .redis_address = config->redis_address};
  auto actions =
      vigil::agent::BuildActions(config->actions, action_registry, action_context,
                                 config->source.empty() ? "the agent config" : config->source);
  if (!actions.ok()) {
    spdlog::error("bad config: {}", actions.status().message());
    return 2;
  }
  const size_t action_count = actions->size();

  const std::string agent_id = config->id;
  const size_t collectors = config->collectors.size();
  vigil::agent::Agent agent(std::move(*config), options, vigil::RealClock::Get());
  if (absl::Status s = agent.EnableCommands(std::move(*actions)); !s.ok()) {
    spdlog::error("cannot run commands: {}", s.message());
    return 2;
  }
  std::thread watcher([&] {
    // The manager waits for READY=1 after RELOADING=1 whatever came of the reload.
    struct ReloadDone {
      const vigil::SdNotifier& notifier;
      ~ReloadDone() { notifier.Ready(); }
    };
    while (true) {
      unsigned char received = 0;
      const ssize_t n = read(g_signal_pipe[0], &received, 1);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      const int sig = n == 1 ? received : SIGTERM;
      if (sig != SIGHUP) {
        spdlog::info("signal {}: stopping", sig);
        notifier.Stopping();
        agent.Stop();
        return;
      }
      notifier.Reloading();
      const ReloadDone done{notifier};
      // Certificates are renewed in place: read the files again and reconnect with them. Files
      // that cannot be read keep the credentials in use.
      if (tls.ca.empty()) {
        spdlog::info("SIGHUP: no certificate files to reload (--insecure)");
        continue;
      }
      absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> reloaded =
          absl::FailedPreconditionError("not read");
      if (absl::Status checked = vigil::CheckTlsFiles(tls, tls_names); !checked.ok()) {
        reloaded = checked;
      } else {
        reloaded = vigil::MakeClientCredentials(tls, options.controller);
      }
      if (!reloaded.ok()) {
        spdlog::error("SIGHUP: keeping the certificates in use: {}", reloaded.status().message());
        continue;
      }
      spdlog::info("SIGHUP: reloaded {}, {} and {}; reconnecting", tls.ca, tls.cert, tls.key);
      agent.stream().ReloadCredentials(*reloaded);
    }
  });
  watcher.detach();
  spdlog::info(
      "vigil-agent {} '{}' with {} collector(s) every {} at +{} and {} action(s), controller {}",
      VIGIL_VERSION, agent_id, collectors, absl::FormatDuration(options.interval),
      absl::FormatDuration(options.aligned_rounds
                               ? absl::ZeroDuration()
                               : vigil::agent::RoundPhase(agent_id, options.interval)),
      action_count, options.controller);
  // Config, actions, journal and results are loaded: the agent serves from here on (connecting
  // is its own business, retried for as long as it runs).
  notifier.Ready();
  agent.Run();
  return 0;
}
