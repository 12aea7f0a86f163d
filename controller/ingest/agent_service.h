// AgentService.Connect on gRPC's callback API: one reactor per agent stream, no thread per
// agent. Reactors never block: every message goes to the ingest thread, which applies it to the
// FleetState, tells the observer (rules, incidents), acknowledges it, and only then asks the
// stream for the next message (one message in flight per agent is the flow control).
// A watchdog ends streams that go silent. Thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/ingest/fleet_state.h"
#include "vigil/v1/agent_service.grpc.pb.h"

namespace vigil::controller {

// What the rest of the controller hears from agents. Called on the ingest thread, in order.
class IngestObserver {
 public:
  virtual ~IngestObserver() = default;
  virtual void OnConnected(const v1::AgentInfo& agent) {}
  virtual void OnDisconnected(const std::string& agent_id, absl::Time when) {}
  virtual void OnTelemetry(const std::string& agent_id, const v1::TelemetryBatch& batch,
                           const std::vector<SeriesState*>& dictionary) {}
  virtual void OnDiagnostics(const std::string& agent_id, const v1::Diagnostics& diagnostics) {}
  // `acknowledge` tells the agent the result is stored, so it stops resending it; call it only
  // then (it is safe from any thread, and a no-op once the agent is gone).
  virtual void OnCommandResult(const std::string& agent_id, const v1::CommandResult& result,
                               std::function<void()> acknowledge) {}
  // The agent's series are about to be freed (it is gone): drop every pointer to them.
  virtual void OnEvicting(const std::string& agent_id) {}
  // The audit checkpoint a newly connected agent holds (its Hello's; bounded, not verified).
  virtual void OnWitness(const std::string& agent_id, const v1::AuditCheckpoint& checkpoint) {}
};

class AgentStream;

class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  struct Options {
    // With the watchdog's 250 ms tick, a silent agent is shown disconnected within 3 s of its
    // last message; agents send at least every silence_timeout / 3.
    absl::Duration silence_timeout = absl::Milliseconds(2500);
    IngestLimits limits{};  // {}: designated initializers may leave it out without a warning
    // Series and diagnostics of agents disconnected this long are freed (the registry stays).
    absl::Duration evict_after = absl::Hours(1);
    // Admission: new streams whose first message would wait behind this many others' are
    // refused with RESOURCE_EXHAUSTED and a retry-after-ms hint, and so are all new streams
    // while the ingest queue's oldest message waits longer than max_queue_delay. A reconnect
    // storm is then admitted at the pace the ingest thread serves, and agents already streaming
    // are never starved into silence by it.
    size_t max_pending_hellos = 512;
    absl::Duration max_queue_delay = absl::Milliseconds(500);
    // ... except a few a second while that wait stays under behind_admission_ceiling: a
    // controller running at capacity (its queue always about one pass over the fleet behind)
    // would otherwise lock the last agents of a storm out for as long as it stays there. Beyond
    // the ceiling, where streaming agents' messages near the silence timeout, none.
    uint32_t behind_admissions_per_second = 10;
    absl::Duration behind_admission_ceiling = absl::Seconds(2);
    // A storm: at least this many streams (and an eighth of those open) opened within four
    // silence timeouts. gRPC's threads then spend themselves on handshakes (TLS above all) and
    // read streaming agents late; silent streams are given four timeouts meanwhile.
    uint64_t storm_streams = 64;
    // The ingest thread runs this many nice levels below gRPC's threads. On a saturated
    // controller (a reconnect storm of thousands) those then answer the CLI and read streaming
    // agents first, and the ingest queue waits, which costs nothing: silence is judged from
    // arrival and admission paces new streams by that wait. 0 keeps it equal.
    int ingest_nice = 5;
  };
  // Streams ended for breaking the wire contract, by what they sent (for /metrics).
  struct Refusals {
    uint64_t hello = 0;
    uint64_t telemetry = 0;
    uint64_t memory_budget = 0;
    uint64_t diagnostics = 0;
    uint64_t command_result = 0;
  };
  // New streams told to come back later (admission control), for /metrics.
  uint64_t streams_refused_busy() const { return refused_busy_.load(); }
  // Watchdog ticks that found a large share of the fleet silent at once and so judged the
  // controller, not the agents, to be behind (for /metrics).
  uint64_t mass_silence_ticks() const { return mass_silence_ticks_.load(); }
  // Watchdog ticks during a storm of new streams (Options::storm_streams), for /metrics.
  uint64_t storm_ticks() const { return storm_ticks_.load(); }
  // How long the oldest message not yet handled has waited (for /metrics).
  absl::Duration queue_delay() const;
  AgentServiceImpl(FleetState* fleet, const Clock* clock, Options options);
  ~AgentServiceImpl() override;

  void SetObserver(IngestObserver* observer) { observer_ = observer; }
  void Start();
  // Ends every stream (agents reconnect elsewhere or later) and stops the threads.
  void Shutdown();
  // The server is going away: from now on streams fall quiet because it stops reading them, not
  // because their agents are silent, so none is marked disconnected for silence (at 10,000
  // agents a shutdown logged hundreds of agents "silent" that were not). Stops the watchdog;
  // call it before the server's Shutdown, and not while Shutdown runs on another thread.
  void StopWatchdog();

  // Sends a message to a connected agent; false when it has no stream.
  bool SendTo(const std::string& agent_id, v1::ControllerMessage message);

  uint64_t messages_received() const { return messages_.load(); }
  Refusals refusals() const;
  uint64_t agents_evicted() const { return evicted_.load(); }

  grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  friend class AgentStream;
  struct Work {
    std::shared_ptr<AgentStream> stream;
    std::unique_ptr<v1::AgentMessage> message;  // null: the stream ended
    bool first = false;                         // the stream's first message (admitted)
    int64_t enqueued_ms = 0;
  };  // both null: housekeeping (eviction) to run on the ingest thread
  void Enqueue(Work work);
  // Queues a new stream's first message, or says how long the agent should wait before trying
  // again (nothing queued then).
  std::optional<absl::Duration> AdmitNewStream(Work work);
  void RollAdmissionWindow(int64_t now_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // How long the oldest message not yet handled has waited.
  int64_t QueueDelayMsLocked(int64_t now_ms) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  int64_t NowMs() const;
  void IngestLoop();
  void Handle(Work& work);
  void WatchdogLoop();
  void EvictGone(absl::Time now);
  // Ends `stream` for a contract violation: logged (rate-limited) and counted. `sequence` is the
  // refused batch's, sent back as trailing metadata so the agent drops it rather than resend it.
  void Refuse(AgentStream& stream, const absl::Status& status, std::atomic<uint64_t>& counter,
              uint64_t sequence = 0);

  FleetState* fleet_;
  const Clock* clock_;
  const Options options_;
  IngestObserver* observer_ = nullptr;
  std::atomic<uint64_t> next_session_{1};
  std::atomic<uint64_t> messages_{0};
  std::atomic<uint64_t> refused_hello_{0};
  std::atomic<uint64_t> refused_telemetry_{0};
  std::atomic<uint64_t> refused_budget_{0};
  std::atomic<uint64_t> refused_diagnostics_{0};
  std::atomic<uint64_t> refused_results_{0};
  std::atomic<uint64_t> evicted_{0};
  std::atomic<uint64_t> refused_busy_{0};
  std::atomic<uint64_t> mass_silence_ticks_{0};
  std::atomic<uint64_t> storm_ticks_{0};
  // Enqueue time of the oldest message of the batch the ingest thread is handling; 0: idle.
  std::atomic<int64_t> handling_since_ms_{0};

  mutable absl::Mutex mu_;
  std::deque<Work> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool watchdog_stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Streams by agent id, once their Hello was accepted.
  std::unordered_map<std::string, std::shared_ptr<AgentStream>> streams_ ABSL_GUARDED_BY(mu_);
  // Streams whose Hello is not accepted yet, by session (watched for silence too).
  std::unordered_map<uint64_t, std::weak_ptr<AgentStream>> opening_ ABSL_GUARDED_BY(mu_);
  // Admission: first messages queued and not handled yet, and per one-second window how many
  // new streams were admitted (handled) and refused.
  size_t pending_hellos_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t window_start_ms_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t admitted_in_window_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t refused_in_window_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t behind_admitted_in_window_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t admitted_last_window_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t refused_last_window_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread ingest_thread_;
  std::thread watchdog_thread_;
};

}  // namespace vigil::controller
