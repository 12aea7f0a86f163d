// The telemetry invariant of the chaos suite, shared by the kill and partition scenarios:
// nothing the controller acknowledged is lost, and every batch an agent collected is held by the
// controller, still spooled by the agent, or recorded as lost (AgentInfo.lost_batches).
// Observables: `vigil agents -o json` (last_sequence, lost_batches) and the agent's
// "telemetry totals" line on SIGTERM. A SIGKILLed incarnation prints no totals, so what it
// collected is bounded below from its lifetime and the rate measured before the faults.
// Thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tests/chaos/chaos_fixture.h"
#include "tests/chaos/chaos_support.h"

namespace vigil::chaos {

struct TelemetryVerdict {
  std::vector<std::string> violations;
  uint64_t sent = 0;             // from the agents' totals
  uint64_t stored = 0;           // the controller's last_sequence, summed
  uint64_t lost_recorded = 0;    // lost_batches, summed
  uint64_t lost_unrecorded = 0;  // collected but neither stored, spooled nor recorded
  void ReportTo(const std::string& scenario) const;
};

class TelemetryWatch {
 public:
  TelemetryWatch(const ChaosController& controller, std::string token,
                 const std::vector<AgentSlot>& agents);

  // True once every agent is connected and its last_sequence grew by `advance` since the call.
  bool WaitStreaming(absl::Duration timeout, uint64_t advance);
  // Measures batches per second per agent over `window` (the slowest agent's rate is kept).
  bool Calibrate(absl::Duration window);
  // Reads the agents now: a last_sequence the controller reported earlier and no longer holds,
  // without lost_batches growing by as much, is a violation (acknowledged batches forgotten).
  void Observe();
  // SIGTERMs every agent, reads its totals and the controller's final view, and checks.
  TelemetryVerdict StopAndCheck(std::vector<AgentSlot>& agents);
  const std::string& LastError() const { return last_error_; }

 private:
  const ChaosController& controller_;
  const std::string token_;
  std::vector<std::string> ids_;
  std::map<std::string, uint64_t> seen_sequence_;
  std::map<std::string, uint64_t> seen_lost_;
  std::vector<std::string> regressions_;
  double rate_ = 0;  // batches per second per agent
  std::string last_error_;
};

}  // namespace vigil::chaos
