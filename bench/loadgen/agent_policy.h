// What a simulated agent does and counts, whichever client carries its streams (gRPC's in
// sim_fleet.cc, nghttp2 in h2_fleet.cc): how a Welcome sets its stream's pace, what an Ack
// settles, how a stream's end is counted and what hint it leaves, and the census of agents not
// streaming. Pure functions over the caller's state; the caller serializes calls per agent.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "bench/loadgen/sim_fleet.h"
#include "vigil/v1/agent_service.pb.h"

namespace vigil::loadgen {

// gRPC status codes the simulator tells apart (grpc/status.h's numbers, without gRPC here).
constexpr int kCancelled = 1;
constexpr int kUnknown = 2;
constexpr int kResourceExhausted = 8;
constexpr int kInternal = 13;
constexpr int kUnavailable = 14;

enum class AgentState { kWaiting, kWatching, kConnecting, kStreaming, kStopped };

// A stream's pace, set by its Welcome.
struct StreamPace {
  absl::Time next_round;           // the first aligned round after the Welcome
  absl::Duration heartbeat;        // the longest gap between writes
  absl::Duration silence_timeout;  // the controller's, for telling its cut-offs from our gaps
};

// The Welcome's consequences at `now`: the next sequence to send (never below what the
// controller has), and the stream's pace. `silence_timeout` is kept when the Welcome states none.
StreamPace Welcomed(const FleetOptions& options, const v1::Welcome& welcome, absl::Time now,
                    absl::Duration silence_timeout, uint64_t* next_sequence);

// Counts a Welcome (the agent's first when *ever_welcomed is false, then set).
void CountWelcome(bool* ever_welcomed, FleetCounters& counters);

// Settles the batches an Ack for `through` covers.
void Acknowledged(uint64_t through, uint64_t samples_per_batch, std::deque<uint64_t>* in_flight,
                  FleetCounters& counters);

// How a stream ended, as its agent saw it.
struct StreamEnd {
  int code = 0;  // the gRPC status code
  absl::string_view message;
  bool was_streaming = false;                // welcomed on it
  bool cancelled_for_welcome = false;        // we gave up waiting for the Welcome
  bool silent_ourselves = false;             // we had written nothing for the controller's timeout
  const std::string* retry_after = nullptr;  // the retry-after-ms trailer, when sent
};

// Counts the end in `counters` (drops once per agent and phase, through *dropped_in_phase) and
// prints the first unexpected ones; the controller's retry hint when it gave one that parses.
std::optional<absl::Duration> CountStreamEnd(const StreamEnd& end, const FleetOptions& options,
                                             absl::string_view agent_id, uint32_t* dropped_in_phase,
                                             FleetCounters& counters);

// One agent, for the census.
struct AgentCensus {
  AgentState state = AgentState::kWaiting;
  absl::Time since;        // in this state
  absl::Time next;         // kWaiting: when its next attempt is due
  bool attempted = false;  // false: its first attempt is still to come
};

// One line on what the agents not streaming are doing, with how long the oldest has been at it.
std::string DescribeNotStreaming(const std::vector<AgentCensus>& agents, absl::Time now);

// The first few unexpected failures are printed, per process; the rest only counted.
void PrintFailure(const std::string& what);

}  // namespace vigil::loadgen
