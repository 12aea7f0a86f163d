// Simulated agents on a bare HTTP/2 client (nghttp2) driven by one event loop per process, for
// plain-text storms. Why: a gRPC client per agent hands every message between its threads, and
// at 10,000 agents on this 2-core machine the simulator needed more CPU than the controller it
// measures (1.34 cores, about 135 µs per agent message, much of it in the kernel switching
// threads). Here an agent message is one send() and an acknowledgement one recv(), on one
// thread: 0.46 cores at 10,000 agents (46 µs a message), 56 against 93 µs at 3,000.
//
// What an agent does is the same as in Fleet (sim_fleet.h) and vigil-agent's stream client: its
// own TCP connection, kept across streams and reconnected after it is lost (100 ms growing to
// 500 ms, as the agent's channel arguments ask of gRPC); a stream to AgentService/Connect that
// says Hello and waits up to welcome_timeout for the Welcome; streaming at once when welcomed (a
// TelemetryBatch every aligned round, heartbeats as the Welcome asks); after a failed stream on a
// live connection, the controller's retry-after-ms hint plus a fully jittered backoff; a
// keepalive PING every 10 s. Mutual TLS is not spoken: use Fleet for it.
//
// Start, Stop and Census may be called from any one thread; everything else runs on the loop's.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/loadgen/agent_fleet.h"
#include "bench/loadgen/sim_fleet.h"
#include "bench/loadgen/telemetry_model.h"

namespace vigil::loadgen {

class H2Agent;
class H2Loop;

class H2Fleet final : public AgentFleet {
 public:
  // `options.credentials` must be empty (plain text only); `target` a numeric IPv4 or IPv6
  // address and port. Construction fails (status) when the address does not resolve or the
  // event loop cannot be made.
  static absl::StatusOr<std::unique_ptr<H2Fleet>> Create(FleetOptions options,
                                                         FleetCounters* counters);
  ~H2Fleet() override;  // Stop()

  void Start(absl::Time start, absl::Duration ramp) override;
  void Stop() override;
  std::string Census() const override;

 private:
  explicit H2Fleet(std::unique_ptr<H2Loop> loop);

  std::unique_ptr<H2Loop> loop_;
  std::thread thread_;
  bool stopped_ = false;  // Stop() ran (owner thread only)
};

}  // namespace vigil::loadgen
