// The agent's journal of command results (STARTED, FINISHED, REFUSED, DUPLICATE), so that a
// result reaches the controller even across broken streams and agent restarts: each result gets
// the next per-agent sequence and is on disk before the stream sees it, and it stays (and is
// resent after every reconnect) until the controller acknowledges it in Ack.result_sequences.
//
// The file is a common/record_file.h file ("vigil-agent results v1") of records tagged by their
// first byte: 'R' + a serialized CommandResult, 'A' + the sequences acknowledged (decimal,
// space-separated), 'N' + the next sequence (first record after every compaction, so numbering
// keeps increasing after the results are gone). Acknowledgements are appended, and the file is
// rewritten with only the pending results once the dead records outweigh them. It is bounded:
// a result that does not fit pushes out the oldest pending ones, each counted and logged.
// A corrupt record is skipped, counted and logged; the records after it are read.
//
// Thread-safe: the executor records from its thread, the stream acknowledges from its reader.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "common/record_file.h"
#include "vigil/v1/agent_service.pb.h"

namespace vigil::agent {

inline constexpr absl::string_view kResultJournalMagic = "vigil-agent results";
inline constexpr uint64_t kDefaultResultJournalBytes = 4 << 20;  // about 1,000 full output tails

struct ResultJournalOptions {
  std::string path;  // empty: kept in memory only (tests, and agents that run no commands)
  // Pending results take at most this many bytes (records and their frames); the file holds at
  // most about twice that between compactions.
  uint64_t max_bytes = kDefaultResultJournalBytes;
};

struct ResultJournalStats {
  size_t pending = 0;             // results not yet acknowledged
  uint64_t pending_bytes = 0;
  uint64_t next_sequence = 1;
  uint64_t corrupt_records = 0;   // skipped while reading the file (regions and unreadable records)
  uint64_t dropped = 0;           // pending results pushed out by the bound
  uint64_t write_errors = 0;      // appends or rewrites that failed (the result stayed in memory)
};

class ResultJournal {
 public:
  // Opens or creates the journal (and its folder). Errors name the file: unreadable, a foreign
  // header or a newer format. Corrupt records and a torn tail are not errors (see above).
  static absl::StatusOr<std::unique_ptr<ResultJournal>> Open(ResultJournalOptions options);

  // Gives `result` the next sequence, appends it and syncs it. It is pending from then on, even
  // when the write failed (returned as an error naming the file), so this process still sends it.
  absl::Status Record(v1::CommandResult& result);

  // The controller has these results (or, for a controller that does not acknowledge results,
  // they were written to its stream): they are no longer pending. Unknown sequences are ignored.
  void Acknowledge(absl::Span<const uint64_t> sequences);

  // Pending results with a sequence above `after`, in sequence order, at most `limit`.
  std::vector<v1::CommandResult> PendingAfter(uint64_t after, size_t limit) const;

  // When a still pending result first showed command `command_id` (its earliest time_unix_ms).
  std::optional<int64_t> FirstSeen(const std::string& command_id) const;

  ResultJournalStats stats() const;
  const std::string& path() const { return options_.path; }

 private:
  explicit ResultJournal(ResultJournalOptions options) : options_(std::move(options)) {}
  // Rewrites the file with the next sequence and the pending results.
  void CompactLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CompactIfWastefulLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLocked(uint64_t sequence) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ResultJournalOptions options_;
  mutable absl::Mutex mu_;
  std::unique_ptr<RecordFile> file_ ABSL_GUARDED_BY(mu_);  // null in memory
  // Sequence -> the serialized 'R' record, which is what the bound counts.
  std::map<uint64_t, std::string> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t pending_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t corrupt_records_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t write_errors_ ABSL_GUARDED_BY(mu_) = 0;
  // A write failed: the file lags memory until a rewrite succeeds (tried at the next change).
  bool rewrite_due_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace vigil::agent
