// Signed checkpoints of the audit chain: "event SEQ has hash HASH", signed with the controller's
// audit key at TIME. The signed bytes are defined in proto/vigil/v1/audit.proto
// (AuditCheckpoint). Immutable after construction; thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/ed25519.h"
#include "vigil/v1/audit.pb.h"

namespace vigil::audit {

// The exact bytes a checkpoint's signature covers.
std::string CheckpointSignedBytes(const v1::AuditCheckpoint& checkpoint);

class CheckpointSigner {
 public:
  explicit CheckpointSigner(std::unique_ptr<Ed25519PrivateKey> key);
  // The audit key at `key_path`, made (with its public half at `public_path`) when missing.
  static absl::StatusOr<std::unique_ptr<CheckpointSigner>> LoadOrCreate(
      const std::string& key_path, const std::string& public_path);

  absl::StatusOr<v1::AuditCheckpoint> Sign(uint64_t seq, absl::string_view hash,
                                           int64_t time_unix_ms) const;
  const std::string& public_key_pem() const { return key_->public_key_pem(); }
  const std::string& key_id() const { return key_id_; }

 private:
  std::unique_ptr<Ed25519PrivateKey> key_;
  std::string key_id_;
};

// OK when `checkpoint` is well formed and signed by `key`; otherwise PermissionDenied (or
// InvalidArgument for a malformed one) naming the checkpoint's seq and what is wrong.
absl::Status VerifyCheckpoint(const Ed25519PublicKey& key, const v1::AuditCheckpoint& checkpoint);

// "checkpoint 1200 (2026-12-01T08:40:00Z)": how messages name a checkpoint.
std::string DescribeCheckpoint(const v1::AuditCheckpoint& checkpoint);

}  // namespace vigil::audit
