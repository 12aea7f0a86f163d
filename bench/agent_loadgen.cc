// Load generator: N simulated agents, each on its own gRPC connection with vigil-agent's
// reconnect logic, against a real vigil-controller; a reconnect storm (all agents within
// --ramp, or a controller restart under them), then a steady-state window. Prints a timeline
// on stderr and `storm ...` / `steady ...` key=value lines on stdout (see bench/scale.sh).
//
//   agent_loadgen --controller-bin build/controller/vigil-controller --agents 1000
//   agent_loadgen --target 127.0.0.1:7443 --controller-pid PID --agents 3000 --token T
//   agent_loadgen --target 127.0.0.1:7443 --controller-cmd 'vigil-controller ...'
//       --mode restart --agents 1000
#include <signal.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "bench/loadgen/storm_runner.h"

namespace {

// A loopback port nobody listens on now, for a controller this tool starts itself.
int PickPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(address);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    return 0;
  }
  const int port = ntohs(address.sin_port);
  close(fd);
  return port;
}

absl::Duration Seconds(double s) { return absl::Milliseconds(static_cast<int64_t>(s * 1000)); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"agent_loadgen: simulated agents, each on its own connection, against a real "
               "vigil-controller: reconnect storms and steady state"};
  vigil::loadgen::StormOptions o;
  std::string controller_bin;
  double interval = 1, ramp = 1, pre_ramp = 10, pre_timeout = 60, timeout = 60, hold = 10,
         steady = 20, probe_period_ms = 200, probe_deadline = 5;
  std::string restart_signal = "KILL";
  app.add_option("--target", o.target, "controller address HOST:PORT the agents dial");
  app.add_option("--probe-target", o.probe_target,
                 "controller address HOST:PORT the CLI probe dials (default: --target), e.g. "
                 "--listen when the agents dial the controller's --agent-listen");
  app.add_option("--controller-pid", o.controller_pid,
                 "pid of the controller at --target, whose CPU and RSS are sampled");
  app.add_option("--controller-cmd", o.controller_cmd,
                 "shell command that starts the controller at --target (started, sampled, "
                 "restarted by --mode=restart, stopped at the end)");
  app.add_option("--controller-bin", controller_bin,
                 "vigil-controller to start on a free loopback port with a temporary database "
                 "(plain text); instead of --target");
  app.add_option("--agents", o.agents, "simulated agents (1000)");
  app.add_option("--processes", o.processes, "simulator processes sharing the agents (4)");
  app.add_option("--sim-nice", o.simulator_nice,
                 "niceness of the simulator processes; the coordinator and its CLI probe keep "
                 "this process's (0)")
      ->check(CLI::Range(0, 19));
  app.add_option("--series", o.series, "series per agent, histograms included (50)");
  app.add_option("--histograms", o.histograms, "latency histograms among the series (5)");
  app.add_option("--snapshots", o.snapshots, "snapshots per batch: larger batches (1)");
  app.add_option("--interval", interval, "seconds between rounds (1)");
  double send_spread_ms = 0;
  app.add_option("--send-spread-ms", send_spread_ms,
                 "each agent's rounds fall at its own offset in [0, this) ms past each interval "
                 "(default: the interval, as vigil-agent phases its rounds; about 20 for agents "
                 "run with --aligned-rounds)")
      ->check(CLI::Range(0.0, 60000.0));
  double heartbeat = 2;
  app.add_option("--heartbeat", heartbeat,
                 "seconds: the longest gap between writes, as the agent's own cap (2); the "
                 "controller's Welcome usually asks for less (common/heartbeat.h)");
  app.add_option("--mode", o.mode,
                 "start: every agent's first attempt within --ramp; restart: agents connect "
                 "over --pre-ramp, then the controller is killed and started again under them");
  app.add_option("--ramp", ramp, "seconds over which the agents make their first attempt (1)");
  app.add_option("--pre-ramp", pre_ramp, "restart mode: seconds to connect before the kill (10)");
  app.add_option("--pre-timeout", pre_timeout,
                 "restart mode: longest wait, once --pre-ramp is over, for all to stream "
                 "before the kill (60)");
  app.add_option("--restart-signal", restart_signal, "KILL or TERM (KILL)");
  app.add_option("--timeout", timeout, "seconds the storm may take to converge (60)");
  app.add_option("--hold", hold, "seconds watched for drops once converged (10)");
  app.add_option("--steady,--duration", steady, "steady-state window in seconds; 0: none (20)");
  app.add_option("--token", o.token, "bearer token for the CLI probe");
  app.add_option("--probe-period-ms", probe_period_ms, "ms between CLI probes (200)");
  app.add_option("--probe-deadline", probe_deadline, "seconds a probe may take (5)");
  std::string probe_call = "list-agents";
  app.add_option("--probe-call", probe_call,
                 "the CLI probe's call: list-agents (the whole fleet) or list-incidents");
  app.add_option("--tls-ca", o.tls_ca, "CA certificate (PEM): mutual TLS instead of plain text");
  app.add_option("--tls-ca-key", o.tls_ca_key,
                 "the CA's key (PEM): each agent gets its own certificate, signed here");
  app.add_option("--tls-cert", o.tls_cert, "the probe's client certificate (PEM)");
  app.add_option("--tls-key", o.tls_key, "the probe's client key (PEM)");
  app.add_option("--client", o.client,
                 "the simulated agents' client: h2 (one event loop per process, plain text) or "
                 "grpc (gRPC's client per agent, as vigil-agent); default h2, grpc with TLS");
  app.add_option("--id-prefix", o.id_prefix, "agent ids are PREFIX-N (sim)");
  app.add_option("--label", o.label, "a word printed in the report lines");
  CLI11_PARSE(app, argc, argv);

  o.interval = Seconds(interval);
  o.heartbeat = Seconds(heartbeat);
  o.send_spread = absl::Milliseconds(send_spread_ms);
  o.ramp = Seconds(ramp);
  o.pre_ramp = Seconds(pre_ramp);
  o.pre_timeout = Seconds(pre_timeout);
  o.timeout = Seconds(timeout);
  o.hold = Seconds(hold);
  o.steady = Seconds(steady);
  o.probe_period = absl::Milliseconds(probe_period_ms);
  o.probe_deadline = Seconds(probe_deadline);
  if (std::optional<vigil::loadgen::ProbeCall> call = vigil::loadgen::ParseProbeCall(probe_call)) {
    o.probe_call = *call;
  } else {
    std::fprintf(stderr, "--probe-call is list-agents or list-incidents, not '%s'\n",
                 probe_call.c_str());
    return 2;
  }
  if (restart_signal == "KILL") {
    o.restart_signal = SIGKILL;
  } else if (restart_signal == "TERM") {
    o.restart_signal = SIGTERM;
  } else {
    std::fprintf(stderr, "--restart-signal is KILL or TERM, not '%s'\n", restart_signal.c_str());
    return 2;
  }
  std::string temp_dir;
  if (!controller_bin.empty()) {
    char dir[] = "/tmp/vigil-loadgen-XXXXXX";
    if (mkdtemp(dir) == nullptr) {
      std::perror("mkdtemp");
      return 1;
    }
    temp_dir = dir;
    const int port = PickPort();
    o.target = absl::StrCat("127.0.0.1:", port);
    o.controller_cmd = absl::StrCat("'", controller_bin, "' --listen=", o.target, " --db='",
                                    temp_dir, "/vigil.db' --insecure --log-level=warn ",
                                    "--http-listen=off 2>'", temp_dir, "/controller.log'");
    // The probe needs a token: a viewer, added before the controller holds the database.
    const std::string add = absl::StrCat("'", controller_bin, "' users add loadgen --role viewer "
                                         "--db='", temp_dir, "/vigil.db' 2>/dev/null");
    if (FILE* out = popen(add.c_str(), "r")) {
      char token[256] = {};
      if (std::fgets(token, sizeof(token), out) != nullptr) {
        o.token = token;
        while (!o.token.empty() && (o.token.back() == '\n' || o.token.back() == '\r')) {
          o.token.pop_back();
        }
      }
      pclose(out);
    }
  }
  if (o.target.empty()) {
    std::fprintf(stderr, "give --target (with --controller-pid or --controller-cmd) or "
                         "--controller-bin\n");
    return 2;
  }
  const int status = vigil::loadgen::RunStorm(o);
  if (!temp_dir.empty()) {
    std::system(("rm -rf '" + temp_dir + "'").c_str());
  }
  return status;
}
