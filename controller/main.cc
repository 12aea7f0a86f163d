// vigil-controller: holds agent streams, evaluates rules, keeps incidents and their timelines.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <thread>

#include "common/logging.h"
#include "common/transport.h"
#include "controller/controller.h"

int main(int argc, char** argv) {
  CLI::App app{
      "vigil-controller: fleet telemetry, alert rules, incidents and approved remediation"};
  vigil::controller::ControllerOptions options;
  std::string log_level = "info";
  app.add_option("--listen", options.listen, "gRPC address for agents and the CLI (HOST:PORT)");
  app.add_option("--db", options.db_path, "SQLite database file (created with its folder)");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  vigil::AddTransportFlags(app, options.transport);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  vigil::SetupLogging("vigil-controller", log_level);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  vigil::controller::Controller controller(options, vigil::RealClock::Get());
  if (absl::Status s = controller.Start(); !s.ok()) {
    spdlog::error("cannot start: {}", s.message());
    return 1;
  }
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("signal {}: stopping", sig);
    controller.Stop();
  });
  controller.Wait();
  watcher.join();
  return 0;
}
