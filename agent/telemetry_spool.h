// Telemetry that the controller has not acknowledged yet, so that neither a reconnect nor an
// agent restart (kill -9 included) loses or doubles it. Entries are numbered with the agent's
// sequence, resent on every new stream until an Ack covers them, and bounded in bytes: beyond
// the bound the oldest are dropped, counted, and reported to the controller in the next batch
// sent (TelemetryBatch.dropped), a report that is itself kept on disk until acknowledged.
//
// On disk (`dir`/telemetry.spool, a RecordFile "vigil-agent telemetry spool v1"), records are:
//   'E' id seq time batch   an entry: a local id (increasing), its sequence (0 until numbered),
//                           its first collection time and a TelemetryBatch that declares its own
//                           series (the wire dictionary is per stream)
//   'S' dropped_through next_sequence reports
//                           state: entries with id <= dropped_through were dropped; the drop
//                           reports not yet acknowledged (a TelemetryBatch with `dropped` only)
// The last state record wins. Acknowledged and dropped entries stay in the file until it is
// compacted (rewritten with the live entries), which happens once their bytes pass a slack of
// about an eighth of the bound; so the file stays below max_bytes plus that slack. A corrupt
// record is skipped and reported as a `corrupt` range; it never blocks the entries after it.
// With an empty `dir` the spool lives in memory only (tests).
//
// Numbering: entries keep the numbers they were sent with, across restarts. Entries queued before
// the first Welcome of this process are numbered then, after the controller's last_sequence, and
// the file is rewritten before any of them is sent.
//
// Not thread-safe: owned by the stream client's sending thread.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/collector.h"
#include "common/record_file.h"
#include "vigil/v1/telemetry.pb.h"

namespace vigil::agent {

inline constexpr absl::string_view kDropSpoolFull = "spool_full";
inline constexpr absl::string_view kDropCorrupt = "corrupt";
inline constexpr absl::string_view kDropExpired = "expired";  // older than the controller takes
// Reports kept at most; beyond it ranges of one reason are merged.
inline constexpr size_t kMaxDropReports = 32;

struct TelemetrySpoolOptions {
  std::string dir;                        // "" = in memory only
  uint64_t max_bytes = uint64_t{64} << 20;  // entries' bytes kept at most
  std::string agent_id;                   // for log lines
  // Rounds older than this are dropped before a stream starts: the controller refuses
  // telemetry older than a day, and each refusal would cost a reconnect.
  absl::Duration max_age = absl::Hours(23);
};

class TelemetrySpool {
 public:
  struct Entry {
    uint64_t id = 0;        // local, increasing in file order
    uint64_t sequence = 0;  // 0 until numbered
    int64_t time_unix_ms = 0;
    std::string batch;  // serialized self-contained v1::TelemetryBatch (no sequence)
    // What it takes on disk: the batch, the record's header and its frame.
    size_t bytes() const { return batch.size() + 33; }
  };

  // Counters for the log and the stop line.
  struct Totals {
    uint64_t collected = 0;  // rounds queued by this process plus entries replayed from disk
    uint64_t replayed = 0;   // entries read back from disk at start
    uint64_t dropped_full = 0;
    uint64_t dropped_corrupt = 0;
    uint64_t dropped_expired = 0;
    uint64_t refused = 0;
  };

  // Opens (or creates) the spool in options.dir and replays what it holds, in order. The folder
  // is locked (flock on dir/LOCK) for as long as the spool lives. Errors name the folder or file:
  // a folder that cannot be made, one another process holds (FailedPrecondition, with its pid),
  // a file that cannot be written. A file that
  // cannot be read as a spool is moved aside (FILE.bad-UNIXTIME) with an error logged, and the
  // spool starts empty: telemetry is not worth stopping the agent for.
  static absl::StatusOr<std::unique_ptr<TelemetrySpool>> Open(TelemetrySpoolOptions options);
  // A spool in memory only.
  explicit TelemetrySpool(uint64_t max_bytes);
  ~TelemetrySpool();
  TelemetrySpool(const TelemetrySpool&) = delete;
  TelemetrySpool& operator=(const TelemetrySpool&) = delete;

  // Queues one round (what the collectors produced since the last call) and writes it to disk;
  // returns it. Drops the oldest entries the bound has no room for.
  const Entry& Add(const std::vector<Collection>& collections);

  // A stream was welcomed: the controller holds everything up to `controller_last_sequence`.
  // The first Welcome of this process numbers the entries queued before it, after that number
  // (and after any number used before); every Welcome drops what the controller already holds.
  // Drop reports are sent again on the new stream.
  // Rounds older than max_age at `now` are dropped first.
  void StartStream(uint64_t controller_last_sequence, absl::Time now = absl::Now());

  // The controller stored every entry up to `sequence`: they leave the spool, and so do the drop
  // reports that travelled on them.
  void AckThrough(uint64_t sequence);

  // The controller refused the entry `sequence` as invalid: it is dropped and counted, never
  // resent. False when no such entry is queued.
  bool Refuse(uint64_t sequence);

  // The wire form of `entry` without its series (the caller translates them into the stream's
  // dictionary): its sequence and the drop reports not yet sent on this stream, which from now
  // on travel with it.
  void AttachReports(const Entry& entry, v1::TelemetryBatch* batch);

  const std::deque<Entry>& entries() const { return entries_; }
  bool numbered() const { return numbered_; }
  uint64_t next_sequence() const { return next_sequence_; }
  uint64_t bytes() const { return bytes_; }
  const Totals& totals() const { return totals_; }
  uint64_t dropped() const {
    return totals_.dropped_full + totals_.dropped_corrupt + totals_.dropped_expired;
  }
  uint64_t refused() const { return totals_.refused; }
  // Drop reports not yet acknowledged.
  std::vector<v1::DroppedRange> PendingReportsForTest() const;
  // Bytes of the spool file (0 in memory).
  uint64_t file_bytes() const { return file_ != nullptr ? file_->size_bytes() : 0; }

 private:
  struct Report {
    v1::DroppedRange range;
    uint64_t carrier = 0;  // sequence of the batch it was sent on in this stream; 0: not yet
  };

  TelemetrySpool(TelemetrySpoolOptions options, std::unique_ptr<RecordFile> file);
  // Rebuilds the state from the records of a file; returns whether it should be compacted.
  bool Replay(const RecordScan& scan);
  void DropOldest(absl::string_view reason);
  void AddReport(absl::string_view reason, uint64_t sequence, uint64_t batches, int64_t first_ms,
                 int64_t last_ms);
  std::string StateRecord() const;
  // Appends a record; a failure is logged once per episode and the entry lives in memory only.
  void Persist(const std::string& record);
  void Compact();
  void MaybeCompact();

  const TelemetrySpoolOptions options_;
  std::unique_ptr<RecordFile> file_;  // null: in memory only
  int lock_fd_ = -1;                  // holds the folder's flock
  std::deque<Entry> entries_;
  std::vector<Report> reports_;
  uint64_t bytes_ = 0;  // of entries_
  uint64_t next_id_ = 1;
  uint64_t dropped_through_id_ = 0;
  bool numbered_ = false;
  uint64_t next_sequence_ = 1;
  Totals totals_;
  bool drop_episode_ = false;   // a drop was logged and no entry was acknowledged since
  bool write_failing_ = false;  // a write failure was logged and no write has succeeded since
};

// Encodes `collections` as one self-contained batch (its own series declarations).
std::string EncodeSelfContained(const std::vector<Collection>& collections);

}  // namespace vigil::agent
