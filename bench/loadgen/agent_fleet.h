// What the storm's coordinator needs of one process's simulated agents, whichever client they
// speak through: gRPC's own (Fleet, sim_fleet.h; plain text or mutual TLS) or a bare HTTP/2
// client on one event loop (H2Fleet, h2_fleet.h; plain text). Both reconnect like vigil-agent's
// stream client and count what they see in a FleetCounters.
#pragma once

#include <string>

#include "absl/time/time.h"

namespace vigil::loadgen {

class AgentFleet {
 public:
  virtual ~AgentFleet() = default;
  // Agent with global index g makes its first attempt at start + ramp * g / total_agents.
  virtual void Start(absl::Time start, absl::Duration ramp) = 0;
  // Ends every stream (not counted as drops) and waits for them and the threads to finish.
  virtual void Stop() = 0;
  // One line on what the agents not streaming are doing (waiting to retry, watching their
  // connection, connecting), with how long the oldest has been at it: why a run did not converge.
  virtual std::string Census() const = 0;
};

}  // namespace vigil::loadgen
