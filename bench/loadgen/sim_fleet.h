// Simulated agents for reconnect storms: each agent has its own gRPC channel (its own TCP
// connection; no subchannel sharing), reconnects like vigil-agent's stream client (waits for the
// channel up to a second while it is down, fully jittered backoff when the channel is up but the
// stream failed, the controller's retry-after-ms hint honoured), and streams as soon as it is
// welcomed: a TelemetryBatch every aligned round, heartbeats in between as the Welcome asks.
// Asynchronous: gRPC's callback API for the streams, one scheduler thread for timers and one
// completion-queue thread for channel state, whatever the number of agents. Batches the
// controller never acknowledged are counted, not resent. Thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/loadgen/agent_fleet.h"
#include "bench/loadgen/telemetry_model.h"

namespace vigil::loadgen {

// What the fleet saw. Plain lock-free atomics, so the block may live in memory shared between
// processes and a coordinator may sum several fleets while they run.
struct FleetCounters {
  std::atomic<int64_t> streaming{0};      // agents welcomed on their current stream
  std::atomic<int64_t> ever_welcomed{0};  // agents welcomed at least once
  std::atomic<uint64_t> attempts{0};      // streams started
  std::atomic<uint64_t> phase_attempted{0};  // distinct agents that started one since the phase changed
  std::atomic<uint64_t> welcomes{0};
  // Welcomed streams ended by the controller (not by us), by status.
  std::atomic<uint64_t> drops{0};
  std::atomic<uint64_t> drops_cancelled{0};    // the controller cancelled it (silence watchdog)
  // ... of which the simulated agent itself had written nothing for the controller's silence
  // timeout (a starved simulator, not a late controller).
  std::atomic<uint64_t> drops_cancelled_own_gap{0};
  std::atomic<uint64_t> drops_unavailable{0};  // the controller went away
  std::atomic<uint64_t> drops_other{0};
  std::atomic<uint64_t> drop_agents{0};  // distinct agents dropped since the phase changed
  // Streams that ended before a Welcome.
  std::atomic<uint64_t> refused_exhausted{0};  // RESOURCE_EXHAUSTED
  std::atomic<uint64_t> retry_hints{0};        // ... carrying retry-after-ms
  std::atomic<uint64_t> retry_hint_ms_total{0};
  std::atomic<uint64_t> welcome_timeouts{0};   // no Welcome within the timeout: we cancelled
  std::atomic<uint64_t> failed_unavailable{0};
  std::atomic<uint64_t> failed_cancelled{0};  // the controller cancelled it (taken, then silent)
  std::atomic<uint64_t> failed_other{0};
  std::atomic<uint64_t> fresh_channels{0};  // channels replaced after being down for long
  // Telemetry.
  std::atomic<uint64_t> batches_sent{0};
  std::atomic<uint64_t> batches_acked{0};
  std::atomic<uint64_t> batches_unacked{0};  // sent, and the stream ended before their Ack
  std::atomic<uint64_t> rounds_skipped{0};   // the stream's outbox was full (flow control)
  std::atomic<uint64_t> heartbeats{0};
  std::atomic<uint64_t> samples_sent{0};
  std::atomic<uint64_t> samples_acked{0};
};

struct FleetOptions {
  std::string target;  // host:port of the controller
  // Credentials of agent `index`; null: plain text.
  std::function<std::shared_ptr<grpc::ChannelCredentials>(int index)> credentials;
  std::string id_prefix = "sim";  // agent ids are PREFIX-INDEX
  std::vector<int> indexes;       // the global indexes of the agents this fleet runs
  int total_agents = 0;           // across every fleet, for the ramp
  absl::Duration interval = absl::Seconds(1);
  // The stream client's defaults (agent/stream_client.h).
  absl::Duration heartbeat = absl::Seconds(2);
  absl::Duration welcome_timeout = absl::Seconds(10);
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(1);
  absl::Duration fresh_channel_after = absl::Seconds(5);
  // Each agent's rounds fall at its own offset past each multiple of the interval, drawn once in
  // [0, send_spread), and carry that instant as their time: the interval, as vigil-agent phases
  // its rounds (agent/collector_runner.h, RoundPhase); 20 ms or so for agents run with
  // --aligned-rounds, which send within a few milliseconds of each other.
  absl::Duration send_spread = absl::Seconds(1);
  int gauges = 45;
  int histograms = 5;
  int snapshots = 1;  // snapshots per batch (larger batches, as an agent catching up sends)
  size_t max_outbox = 8;  // messages queued on one stream before rounds are skipped
  // Drops are counted per distinct agent once per value of *phase (null: once per run).
  const std::atomic<uint32_t>* phase = nullptr;
};

class SimAgent;

// The agents on gRPC's client: each its own channel.
class Fleet final : public AgentFleet {
 public:
  Fleet(FleetOptions options, FleetCounters* counters);
  ~Fleet() override;  // Stop()

  void Start(absl::Time start, absl::Duration ramp) override;
  void Stop() override;
  std::string Census() const override;

  // For SimAgent.
  enum class EventKind { kAttempt, kRound, kWelcomeDeadline };
  void Schedule(absl::Time when, SimAgent* agent, EventKind kind, uint64_t epoch);
  // Calls agent->ChannelWatchDone(epoch) when `channel` leaves `last` or at `deadline`.
  void Watch(std::shared_ptr<grpc::Channel> channel, grpc_connectivity_state last,
             absl::Time deadline, SimAgent* agent, uint64_t epoch);
  void StreamStarted();
  void StreamGone();
  const FleetOptions& options() const { return options_; }
  FleetCounters& counters() { return *counters_; }
  const TelemetryModel& model() const { return model_; }

 private:
  struct Event {
    absl::Time when;
    SimAgent* agent;
    EventKind kind;
    uint64_t epoch;
    bool operator>(const Event& other) const { return when > other.when; }
  };
  void SchedulerLoop();
  void WatcherLoop();

  const FleetOptions options_;
  FleetCounters* const counters_;
  const TelemetryModel model_;
  std::vector<std::unique_ptr<SimAgent>> agents_;

  absl::Mutex mu_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int live_streams_ ABSL_GUARDED_BY(mu_) = 0;
  int pending_watches_ ABSL_GUARDED_BY(mu_) = 0;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar wake_;

  grpc::CompletionQueue watch_queue_;
  std::thread scheduler_;
  std::thread watcher_;
  bool stopped_ = false;  // Stop() ran (owner thread only)
};

}  // namespace vigil::loadgen
