// The storm benchmark's coordinator: forks the simulator processes (each a Fleet of agents on
// their own connections), starts or restarts the controller when asked to, and while the storm
// runs samples every second the controller's CPU and RSS (/proc), the simulator's own CPU and
// the fleet's counters, and probes ListAgents as the CLI would. Prints a timeline on stderr and
// one `storm ...` and one `steady ...` line of key=value pairs on stdout. One per process; not
// thread-safe.
#pragma once

#include <sys/types.h>

#include <string>

#include "absl/time/time.h"
#include "bench/loadgen/cli_probe.h"

namespace vigil::loadgen {

struct StormOptions {
  std::string target;          // controller address the agents dial, host:port
  std::string probe_target;    // the address the CLI probe dials (empty: `target`)
  pid_t controller_pid = 0;    // a controller started elsewhere, measured (0: none)
  std::string controller_cmd;  // or: a shell command that starts it (measured, restartable)
  int agents = 1000;
  int processes = 4;  // simulator processes sharing the agents
  // Niceness the simulator processes take (0: this process's). The coordinator, which also runs
  // the CLI probe, keeps its own: a commander's CLI does not run at the simulated fleet's
  // priority, so the probe measures the controller rather than the simulator's starvation.
  int simulator_nice = 0;
  int series = 50;
  int histograms = 5;
  int snapshots = 1;  // per batch
  absl::Duration interval = absl::Seconds(1);
  absl::Duration heartbeat = absl::Seconds(2);  // the agent's cap on the gap between writes
  // Each agent's rounds fall at its own offset in [0, send_spread) past each multiple of the
  // interval (FleetOptions::send_spread); zero or less: the interval, as vigil-agent phases them.
  absl::Duration send_spread = absl::ZeroDuration();
  // "start": every agent makes its first attempt within `ramp` of the start.
  // "restart": agents connect over `pre_ramp` (and up to `pre_timeout` after it, until all
  // stream), then the controller is killed with `restart_signal` and started again under them;
  // the storm is timed from then.
  std::string mode = "start";
  absl::Duration ramp = absl::Seconds(1);
  absl::Duration pre_ramp = absl::Seconds(10);
  absl::Duration pre_timeout = absl::Seconds(60);
  int restart_signal = 9;
  absl::Duration timeout = absl::Seconds(60);  // the storm's bound, converged or not
  absl::Duration hold = absl::Seconds(10);     // watched for drops after converging
  absl::Duration steady = absl::Seconds(20);   // steady-state window after the storm
  // The CLI probe.
  std::string token;
  absl::Duration probe_period = absl::Milliseconds(200);
  absl::Duration probe_deadline = absl::Seconds(5);
  ProbeCall probe_call = ProbeCall::kListAgents;
  // Transport: plain text, or mutual TLS with one certificate per agent made here, signed by
  // the CA whose key is given (its SAN is the agent's id, as the controller requires).
  std::string tls_ca;      // CA certificate (PEM file)
  std::string tls_ca_key;  // CA key (PEM file): per-agent certificates are signed with it
  std::string tls_cert;    // the probe's client certificate and key (PEM files)
  std::string tls_key;
  // The simulated agents' client: "h2" (nghttp2 on one event loop per process: the cheapest,
  // so the controller gets the cores; plain text only) or "grpc" (gRPC's own client per agent,
  // as vigil-agent; the only one for mutual TLS). Empty: h2 for plain text, grpc for TLS.
  std::string client;
  std::string id_prefix = "sim";
  std::string label;  // printed in the report lines (e.g. "plain", "mtls")
};

// Runs the whole benchmark; the process exit status: 0 when it ran (converged or not), 1 when
// it could not (controller never listened, fork failed, bad TLS files), 2 on bad options.
int RunStorm(const StormOptions& options);

}  // namespace vigil::loadgen
