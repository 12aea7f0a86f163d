// The agent's side of AgentService.Connect: one long-lived stream to the controller that carries
// telemetry (spooled until acknowledged), diagnostics and command results up, and commands and
// diagnostics requests down. Telemetry goes through a TelemetrySpool on disk, so it survives a
// restart of the agent. Command results come from the result journal: after each Welcome
// the unacknowledged ones are resent in sequence order, then new ones follow as they are
// recorded; a controller that acknowledges results (Welcome.acks_results) removes them with
// Ack.result_sequences, to any other each is sent once. Reconnects with a bounded, fully
// jittered backoff (at most a second between attempts, and waits on the channel so a stream
// starts the moment the controller answers), logging once per change of state. Thread-safe:
// producers call Push*/Send from any thread; Run owns one thread and starts a reader thread per
// stream. With a CheckpointWitness, every Hello carries the audit checkpoint it holds, and the
// checkpoints the controller sends are offered to it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/checkpoint_witness.h"
#include "agent/collector.h"
#include "agent/result_journal.h"
#include "agent/series_dictionary.h"
#include "agent/telemetry_spool.h"
#include "common/clock.h"
#include "vigil/v1/agent_service.grpc.pb.h"

namespace vigil::agent {

struct StreamClientOptions {
  std::string controller;  // host:port
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  v1::Hello hello;  // sent first on every stream
  // The longest gap between writes; the controller's Welcome usually asks for less (see
  // common/heartbeat.h).
  absl::Duration heartbeat = absl::Seconds(2);
  absl::Duration welcome_timeout = absl::Seconds(10);
  // Between attempts: a uniform wait in [0, backoff], backoff doubling from initial to max.
  // Kept short so that a fleet is streaming again within 2 s of its controller answering.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(1);
  // A channel still failing after this long is replaced by a fresh one (no stuck subchannel).
  absl::Duration fresh_channel_after = absl::Seconds(5);
  std::string spool_dir;                          // "" = in memory only
  uint64_t spool_max_bytes = uint64_t{64} << 20;  // the spool's bound on disk and in memory
  size_t max_queued_messages = 1000;  // diagnostics and results waiting for a stream
};

class StreamClient {
 public:
  using DiagnosticsHandler = std::function<void(const v1::CollectDiagnostics&)>;
  using CommandHandler = std::function<void(const v1::Command&)>;
  using WatchHandler = std::function<void(const v1::WatchThresholds&)>;

  StreamClient(StreamClientOptions options, const Clock* clock);
  ~StreamClient();

  // Handlers run on the stream's reader thread; they must not block for long.
  void SetDiagnosticsHandler(DiagnosticsHandler handler) {
    diagnostics_handler_ = std::move(handler);
  }
  void SetCommandHandler(CommandHandler handler) { command_handler_ = std::move(handler); }
  // The thresholds to watch between rounds, as the controller sends them (after each Welcome
  // and on a rule reload). Before Run.
  void SetWatchHandler(WatchHandler handler) { watch_handler_ = std::move(handler); }
  // Sends the command results recorded in `results` (not owned; outlives the client). Before Run.
  void SetResultJournal(ResultJournal* results) { results_ = results; }
  // Reports the checkpoint `witness` holds in every Hello and offers it the controller's
  // (not owned; outlives the client). Before Run.
  void SetCheckpointWitness(CheckpointWitness* witness) { witness_ = witness; }
  // A result was recorded in the result journal: send it. Any thread.
  void ResultRecorded();

  // Queues one collection round; it is sent, and resent after a reconnect, until acknowledged.
  void PushTelemetry(Collection collection);
  // Queues a message (diagnostics, command result) for the current or next stream.
  void Send(v1::AgentMessage message);

  // Ends the current stream and connects again with `credentials` (certificate files reread on
  // SIGHUP). Any thread.
  void ReloadCredentials(std::shared_ptr<grpc::ChannelCredentials> credentials);

  // Connects and keeps connecting until Stop(). Blocks.
  void Run();
  void Stop();

  bool connected() const { return connected_.load(); }
  // Highest sequence the controller acknowledged.
  uint64_t acked_sequence() const { return acked_.load(); }
  // Telemetry batches written to streams (resends included).
  uint64_t sent_batches() const { return sent_.load(); }
  // "telemetry totals: collected=N sent=N acknowledged_through=SEQ dropped=N refused=N
  // spooled=N", logged when Run returns. Call from the Run thread or after Run returned.
  std::string TotalsLine() const;

 private:
  struct Pending {
    std::vector<Collection> telemetry;
    std::deque<v1::AgentMessage> messages;
  };
  // One stream from connect to its end; returns why it ended.
  absl::Status RunStream();
  // After a stream ended: drops the batch the controller refused, if it named one.
  void DropRefusedBatch(const grpc::ClientContext& context, const grpc::Status& status);
  // Waits until there is something to send, `deadline`, a broken stream or Stop().
  // Queued messages are taken only when `take_messages` (a welcomed stream).
  Pending WaitForWork(absl::Time deadline, const std::atomic<bool>* broken, bool take_messages);
  void SendSpoolEntry(const TelemetrySpool::Entry& entry,
                      grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>* stream,
                      bool* ok);
  void NoteStreamEnded(const absl::Status& why);
  // Spools telemetry that arrived while no stream could take it.
  void SpoolPending(Pending& work);
  // Waits up to `until` for the channel to connect, spooling telemetry meanwhile; true when it
  // is ready (a stream can start at once).
  bool WaitForChannel(absl::Time until);
  // Writes the journal's results above `*cursor` and moves it on; true when it wrote any. To a
  // controller that does not acknowledge results, each is dropped from the journal once written.
  bool SendResults(grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>* stream,
                   bool acks_results, uint64_t* cursor, bool* ok);

  const StreamClientOptions options_;
  const Clock* clock_;
  const bool sleeps_to_deadline_;  // the real clock: waits sleep to their deadline, not poll
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AgentService::Stub> stub_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;  // the ones channel_ uses
  DiagnosticsHandler diagnostics_handler_;
  CommandHandler command_handler_;
  WatchHandler watch_handler_;
  ResultJournal* results_ = nullptr;
  CheckpointWitness* witness_ = nullptr;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;  // the reader saw a Welcome, an Ack or the end
  Pending pending_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* active_context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::shared_ptr<grpc::ChannelCredentials> new_credentials_ ABSL_GUARDED_BY(mu_);

  // Owned by the Run thread (channel_ and stub_ too, once Run started).
  std::unique_ptr<TelemetrySpool> spool_;
  SeriesDictionary dictionary_;
  std::string last_error_;  // the last failure logged, so a retry loop logs it once
  // When to come back, as the controller asked in the stream's end (admission control); zero
  // when it did not. Run's thread only.
  absl::Duration retry_after_ = absl::ZeroDuration();
  int failed_attempts_ = 0;
  absl::Time down_since_ = absl::InfinitePast();

  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> acked_{0};
  std::atomic<uint64_t> sent_{0};
};

}  // namespace vigil::agent
