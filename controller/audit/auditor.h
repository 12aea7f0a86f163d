// The controller's side of a trustworthy audit trail: checks the chain against its signed
// checkpoints (full, or incremental from the newest checkpoint a full check verified), and
// compares what witnesses hold (agents, the CLI, the append-only log) with the database. A
// database older than a witnessed checkpoint, or holding another hash at its seq, is a rollback
// (or a fork): it is logged loudly, recorded on the timeline (kind "audit.rollback_detected"),
// and the timeline takes no other write until an admin accepts it with a reason
// (`vigil-controller audit accept-rollback`, itself an event, "audit.rollback_accepted").
// Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/ed25519.h"
#include "controller/timeline/timeline_writer.h"
#include "storage/store.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::controller {

inline constexpr char kRollbackDetectedKind[] = "audit.rollback_detected";
inline constexpr char kRollbackAcceptedKind[] = "audit.rollback_accepted";

// `s` as a JSON string (quotes, escapes): the audit events' details are JSON.
std::string AuditJsonString(absl::string_view s);

class Auditor {
 public:
  // `writer` records rollbacks and holds the timeline; `public_key_pem`: the audit key's.
  Auditor(storage::Store* store, TimelineWriter* writer, const Clock* clock);
  // Parses the key and restores a hold a previous run left (a rollback not yet accepted).
  absl::Status Init(const std::string& public_key_pem);

  // The VerifyAudit call: the chain against its checkpoints (request.full: from event 1), and
  // request.witness compared with the database.
  absl::StatusOr<v1::VerifyAuditResponse> Verify(const v1::VerifyAuditRequest& request,
                                                 const std::string& caller);

  // A checkpoint `witness` holds ("agent web-1", "user ana", "checkpoint log PATH"). Ignored
  // (with a warning) when its signature is not the audit key's; otherwise compared with the
  // database, and a rollback or fork is recorded. Returns the problem found, if any.
  std::optional<std::string> CheckWitness(const std::string& witness,
                                          const v1::AuditCheckpoint& checkpoint);

  // Lifts the hold once an acceptance was stored (by another process). Housekeeping, 1/s.
  void PollAcceptance();
  // The hold in force: the rollback found and not yet accepted.
  std::optional<std::string> hold() const;
  const std::string& public_key_pem() const { return public_key_pem_; }

 private:
  // The newest acceptance's time (ms) and seq, 0 when none.
  absl::StatusOr<std::pair<int64_t, uint64_t>> LatestAcceptance();
  // Sets the hold; false when one was already set (then nothing is recorded again).
  bool Hold(const std::string& problem);

  storage::Store* const store_;
  TimelineWriter* const writer_;
  const Clock* const clock_;
  std::string public_key_pem_;
  std::unique_ptr<Ed25519PublicKey> key_;

  mutable absl::Mutex mu_;
  // The newest checkpoint a full check found the chain reaching: where incremental checks start.
  std::optional<v1::AuditCheckpoint> verified_ ABSL_GUARDED_BY(mu_);
  std::optional<std::string> hold_ ABSL_GUARDED_BY(mu_);
  uint64_t hold_seq_ ABSL_GUARDED_BY(mu_) = 0;  // the seq of the event that recorded it
  int64_t accepted_unix_ms_ ABSL_GUARDED_BY(mu_) = 0;
  // Witness checkpoints already found consistent ("seq:hash"): a reconnect storm reads nothing.
  absl::flat_hash_set<std::string> consistent_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vigil::controller
