// The agent as a witness of the controller's audit chain (DESIGN.md, "Witnessed audit"): it keeps
// the newest signed checkpoint the controller sent it, on disk beside its command journal, and
// reports it in every Hello, so a controller whose database was edited, truncated or restored
// from an older copy is caught by what its agents hold.
//
// Which checkpoint is kept: the one with the highest sequence. A lower sequence (a controller
// restored from an older database) and the same sequence with another hash (a fork) never replace
// the held one; each is logged once as a warning and counted. The agent does not hold the audit
// key and so does not verify signatures; it bounds what it takes (CheckCheckpointFields) and
// keeps only the known fields.
//
// The file ("vigil-agent checkpoint v1", one common/record_file.h record: the serialized
// AuditCheckpoint) is replaced atomically (temporary file, fsync, rename, fsync of the folder),
// mode 0600. A write that fails leaves the previous file as it was, is logged (rate-limited) and
// counted, and is tried again when the controller next sends the checkpoint; the agent keeps
// reporting the checkpoint from memory meanwhile. A missing file means no checkpoint yet; an
// unreadable or damaged one is logged with its path and treated as none (the next valid
// checkpoint replaces it).
//
// Thread-safe: the stream's reader offers checkpoints, the stream's Run thread reads the held one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/logging.h"
#include "vigil/v1/audit.pb.h"

namespace vigil::agent {

inline constexpr absl::string_view kCheckpointFileMagic = "vigil-agent checkpoint";  // then " v1"
// Bounds on what the agent takes from the controller and reads from its disk.
inline constexpr size_t kCheckpointHashChars = 64;  // hex SHA-256, lowercase
inline constexpr size_t kMaxCheckpointSignatureBytes = 128;
inline constexpr size_t kMaxCheckpointKeyIdChars = 64;
inline constexpr size_t kMaxCheckpointFileBytes = 4096;

// OK when every field is within the bounds above (seq > 0, hash 64 lowercase hex characters,
// signature at most 128 bytes, key_id at most 64 characters); otherwise InvalidArgument naming
// the first field out of bounds ("field 'hash': ..."). Pure.
absl::Status CheckCheckpointFields(const v1::AuditCheckpoint& checkpoint);

// The file's bytes for `checkpoint` (header line and one checksummed record). Pure.
std::string EncodeCheckpointFile(const v1::AuditCheckpoint& checkpoint);
// The checkpoint a file holds; DataLoss naming `name` when the bytes are not one intact record of
// a well-formed AuditCheckpoint within bounds, FailedPrecondition for a newer format. Pure.
absl::StatusOr<v1::AuditCheckpoint> DecodeCheckpointFile(absl::string_view data,
                                                         absl::string_view name);

// What became of a checkpoint the controller sent.
enum class CheckpointOffer {
  kTaken,        // newer than the one held (or the first): now held, and written to disk
  kAlreadyHeld,  // the same sequence and hash as the one held
  kOlder,        // a lower sequence than the one held: kept out
  kFork,         // the held sequence with another hash: kept out
  kInvalid,      // a field out of bounds: ignored
};

struct CheckpointWitnessStats {
  uint64_t taken = 0;
  uint64_t older = 0;
  uint64_t forks = 0;
  uint64_t invalid = 0;
  uint64_t write_errors = 0;
  bool unsaved = false;           // the held checkpoint is not on disk (a write failed)
  bool damaged_at_start = false;  // the file could not be read or did not verify at start
};

struct CheckpointWitnessOptions {
  // Where the checkpoint is kept ("" = in memory only); see CheckpointPath() in agent_config.h.
  std::string path;
  // Replaces the file atomically; tests inject failures here. Default: WriteFileAtomically.
  std::function<absl::Status(const std::string& path, absl::string_view content)> write = nullptr;
  const Clock* clock = nullptr;  // for the log's rate limit; default: the real clock
};

class CheckpointWitness {
 public:
  // Reads the file at `options.path`. Never fails: a missing, unreadable or damaged file leaves
  // no checkpoint held (the last two are logged with the path and noted in stats()).
  static std::unique_ptr<CheckpointWitness> Open(CheckpointWitnessOptions options);

  // Takes `checkpoint` when it is within bounds and newer than the one held (the keep-highest
  // rule above), and writes it to disk; says what became of it. Never fails: a failed write is
  // logged and counted, and the checkpoint is still held in memory.
  CheckpointOffer Offer(const v1::AuditCheckpoint& checkpoint);

  // The checkpoint held, for the Hello; nullopt when none.
  std::optional<v1::AuditCheckpoint> Held() const;
  CheckpointWitnessStats stats() const;
  // "audit witness: held_seq=N taken=N older=N forks=N invalid=N write_errors=N unsaved=no".
  std::string StatusLine() const;
  const std::string& path() const { return options_.path; }

 private:
  explicit CheckpointWitness(CheckpointWitnessOptions options) : options_(std::move(options)) {}
  void LoadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes held_ to the file; on failure logs (rate-limited), counts and marks it unsaved.
  void SaveLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CheckpointWitnessOptions options_;
  // Each kind of complaint has its own limit, so a flood of one does not hide the other.
  RateLimitedLog invalid_log_{3, absl::Minutes(1)};
  RateLimitedLog write_log_{3, absl::Minutes(1)};
  mutable absl::Mutex mu_;
  std::optional<v1::AuditCheckpoint> held_ ABSL_GUARDED_BY(mu_);
  CheckpointWitnessStats stats_ ABSL_GUARDED_BY(mu_);
  // The last older and forked checkpoints warned about, so a controller that sends the same one
  // on every reconnect is named once.
  std::string warned_older_ ABSL_GUARDED_BY(mu_);
  std::string warned_fork_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vigil::agent
