// Signs the audit chain's head with the controller's audit key (a signed checkpoint) every
// `every_events` events and every `every`, on demand (an export wants one that covers it) and
// on shutdown; stores each checkpoint, appends it to the optional append-only log, and hands it
// to whoever keeps copies off the box (the agents, through Publish). A checkpoint is only ever
// of a head the store holds: the store checks the hash in the transaction that stores it.
// With a timeline writer, the periodic checkpoints ride in its next group commit (no fsync of
// their own: checkpointing costs the append rate almost nothing); on demand and at shutdown
// they are written at once. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/audit/checkpoint.h"
#include "common/clock.h"
#include "common/logging.h"
#include "controller/timeline/timeline_writer.h"
#include "storage/store.h"

namespace vigil::controller {

class Checkpointer {
 public:
  struct Options {
    size_t every_events = 1000;
    absl::Duration every = absl::Seconds(10);
    // Appended one JSON line per checkpoint (O_APPEND, fsync): a witness on another volume or
    // a log shipper's input. Empty: none.
    std::string log_path;
  };
  struct Stats {
    uint64_t signed_checkpoints = 0;
    uint64_t failures = 0;      // signing or storing failed (retried at the next occasion)
    uint64_t log_failures = 0;  // the append-only log could not be written
  };
  using Publish = std::function<void(const v1::AuditCheckpoint&)>;

  // `writer`: the timeline writer whose events OnEvent hears (its batch hooks are added here,
  // so before it starts); null: checkpoints are written in transactions of their own.
  Checkpointer(storage::Store* store, const Clock* clock,
               std::unique_ptr<audit::CheckpointSigner> signer, Options options,
               TimelineWriter* writer = nullptr);
  ~Checkpointer();

  // Reads the newest stored checkpoint and starts the signing thread.
  absl::Status Start();
  // Signs the head one last time (after the timeline writer stopped) and ends the thread.
  void Stop();
  // Called with every stored event (a timeline writer listener): counts toward every_events.
  void OnEvent(const v1::TimelineEvent& event);
  // The head signed now (the newest checkpoint when the head has not moved since). NotFound on
  // an empty timeline.
  absl::StatusOr<v1::AuditCheckpoint> CheckpointNow();
  std::optional<v1::AuditCheckpoint> latest() const;
  // Before Start.
  void SetPublisher(Publish publish) { publish_ = std::move(publish); }
  const std::string& public_key_pem() const { return signer_->public_key_pem(); }
  Stats stats() const;

 private:
  void Loop();
  // The periodic checkpoint: through the writer's next batch when there is a writer.
  void Periodic();
  // The writer's batch hooks: the pending checkpoint joins a batch, and is stored with it.
  void AttachTo(storage::WriteBatch& batch);
  void AfterCommit(bool committed);
  // A checkpoint is stored: the newest now, logged and published.
  void Stored(const v1::AuditCheckpoint& checkpoint);
  void AppendToLog(const v1::AuditCheckpoint& checkpoint);

  storage::Store* const store_;
  const Clock* const clock_;
  const std::unique_ptr<audit::CheckpointSigner> signer_;
  const Options options_;
  TimelineWriter* const writer_;
  Publish publish_;
  RateLimitedLog failure_log_{3, absl::Minutes(1)};

  absl::Mutex sign_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // one signing at a time
  mutable absl::Mutex mu_;
  std::optional<v1::AuditCheckpoint> latest_ ABSL_GUARDED_BY(mu_);
  // The seq the newest signed checkpoint covers, stored or still pending (or one whose signing
  // failed, so a full disk is retried after the next run of events, not at once). The count of
  // "every N events" runs from here, so events that arrive while one is pending are not lost.
  uint64_t covered_seq_ ABSL_GUARDED_BY(mu_) = 0;
  // The head as the writer's listener last heard it (seq 0: not yet).
  uint64_t head_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::string head_hash_ ABSL_GUARDED_BY(mu_);
  // Signed, waiting for the writer's next batch (attached_: in the batch being committed).
  std::optional<v1::AuditCheckpoint> pending_ ABSL_GUARDED_BY(mu_);
  bool attached_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// The checkpoint as one line of the append-only log (protobuf JSON, field names kept; empty when
// it cannot be written so), and back.
std::string CheckpointLogLine(const v1::AuditCheckpoint& checkpoint);
absl::StatusOr<v1::AuditCheckpoint> ParseCheckpointLogLine(absl::string_view line);
// The last checkpoint in the log at `path` (reads at most its last 64 KiB). NotFound when the file
// is missing or holds none.
absl::StatusOr<v1::AuditCheckpoint> LastLoggedCheckpoint(const std::string& path);

}  // namespace vigil::controller
