// The agent process: collector runners feeding a stream client, diagnostics requests fanned out
// to the collectors that can answer them. Thread-safe; Run blocks until Stop.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agent/actions/action.h"
#include "agent/agent_config.h"
#include "agent/checkpoint_witness.h"
#include "agent/collector_runner.h"
#include "agent/command_executor.h"
#include "agent/result_journal.h"
#include "agent/stream_client.h"
#include "agent/threshold_watch.h"
#include "common/clock.h"

namespace vigil::agent {

struct AgentOptions {
  std::string controller;  // host:port
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  absl::Duration interval = absl::Seconds(1);
  bool init_journal = false;  // --init-journal: start a new command journal where one is missing
  // How often the thresholds the controller sends are checked between rounds (--sense-every);
  // zero turns sensing off (detection then waits for the rounds).
  absl::Duration sense_every = absl::Milliseconds(100);
  // Rounds at the same instant of every interval on every agent (--aligned-rounds) instead of at
  // the agent's own phase (RoundPhase, collector_runner.h).
  bool aligned_rounds = false;
};

class Agent {
 public:
  Agent(AgentConfig config, AgentOptions options, const Clock* clock);
  ~Agent();

  // Lets the controller's signed commands run `actions` (call before Run), and opens the result
  // journal whose unacknowledged results are resent. Errors name the journal or the key.
  absl::Status EnableCommands(std::vector<std::unique_ptr<Action>> actions);

  void Run();   // blocks until Stop()
  void Stop();  // safe from a signal-watching thread

  StreamClient& stream() { return *stream_; }
  // The audit checkpoint this agent holds as a witness of the controller's chain.
  const CheckpointWitness& witness() const { return *witness_; }
  // The thresholds watched between rounds (nullptr until the controller sent some).
  std::shared_ptr<const ThresholdSet> watched() const { return watch_.Current(); }
  // Early snapshots sent by all collectors since start.
  uint64_t early_snapshots() const;

 private:
  void OnCollectDiagnostics(const v1::CollectDiagnostics& request);
  void OnWatchThresholds(const v1::WatchThresholds& message);

  AgentConfig config_;
  AgentOptions options_;
  const Clock* clock_;
  std::unique_ptr<ResultJournal> results_;  // before stream_ and executor_: they use it
  ThresholdWatch watch_;  // before stream_ and runners_: both use it
  std::unique_ptr<CheckpointWitness> witness_;  // before stream_: it uses it
  std::unique_ptr<StreamClient> stream_;
  std::vector<std::unique_ptr<CollectorRunner>> runners_;
  std::unique_ptr<CommandExecutor> executor_;
  std::string watch_summary_;  // the last thresholds taken, for the log (stream reader's own)
};

// The Hello this agent sends on every stream: the collectors of `config` by name and the metrics
// they declare outside the built-in schema (DeclaredMetrics(), each marked with its collector).
v1::Hello MakeHello(const AgentConfig& config, absl::Duration interval);

}  // namespace vigil::agent
