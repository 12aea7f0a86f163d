// Circuit breakers: how often each action ran, per agent and fleet-wide, within the policy's
// sliding windows, so that neither an automated loop nor a tired hand restarts the same worker
// twenty times in an hour. A run counts from the moment its signed command is stored (it may run
// from then on), and runs already planned but not yet signed count too. An admin re-arms a
// breaker with a reason; runs before the re-arm then no longer count for it.
// Pure state: the remediation manager keeps one on its writer thread and rebuilds it at start
// from the stored proposals and re-arm events. Thread-compatible.
#pragma once

#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "controller/remediation/policy.h"

namespace vigil::controller {

class RunLedger {
 public:
  // Runs older than this are forgotten (the longest window a policy may set).
  static constexpr absl::Duration kHorizon = absl::Hours(24 * 7);

  // A run of `action` on `agent`, its command stored at `time`.
  void AddRun(const std::string& action, const std::string& agent, absl::Time time);
  // Takes back a run added by AddRun (a transaction that failed).
  void RemoveRun(const std::string& action, const std::string& agent, absl::Time time);
  // Runs of `action` before `time` no longer count on `agents` (empty: fleet-wide and on
  // every agent).
  void Rearm(const std::string& action, const std::vector<std::string>& agents, absl::Time time);

  // OK when `action` may run once more on each of `agents` at `now`, `planned` (agent -> runs
  // approved but not yet stored) counting as runs at `now`. Otherwise ResourceExhausted naming
  // the action, the agent, the count, the bound and when the breaker lets it run again.
  absl::Status Check(const std::string& action, const std::vector<std::string>& agents,
                     const std::map<std::string, int>& planned, const BreakerLimits& limits,
                     absl::Time now) const;

  // Forgets runs older than the horizon.
  void Prune(absl::Time now);

  size_t runs() const;

 private:
  struct ActionRuns {
    std::map<std::string, std::deque<absl::Time>> by_agent;  // oldest first
    std::deque<absl::Time> fleet;                            // oldest first
    std::map<std::string, absl::Time> rearmed_agent;
    absl::Time rearmed_fleet = absl::InfinitePast();
  };
  std::map<std::string, ActionRuns> actions_;
};

}  // namespace vigil::controller
