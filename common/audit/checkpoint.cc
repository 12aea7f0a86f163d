#include "common/audit/checkpoint.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/audit/chain_hash.h"

namespace vigil::audit {
std::string CheckpointSignedBytes(const v1::AuditCheckpoint& checkpoint) {
  std::string out = "vigil.checkpoint.v1";
  AppendU64(out, checkpoint.seq());
  AppendU64(out, checkpoint.hash().size());
  out.append(checkpoint.hash());
  AppendU64(out, static_cast<uint64_t>(checkpoint.time_unix_ms()));
  return out;
}

CheckpointSigner::CheckpointSigner(std::unique_ptr<Ed25519PrivateKey> key) : key_(std::move(key)) {
  absl::StatusOr<std::unique_ptr<Ed25519PublicKey>> public_key =
      Ed25519PublicKey::FromPem(key_->public_key_pem());
  if (public_key.ok()) {
    key_id_ = (*public_key)->key_id();
  }
}

absl::StatusOr<std::unique_ptr<CheckpointSigner>> CheckpointSigner::LoadOrCreate(
    const std::string& key_path, const std::string& public_path) {
  absl::StatusOr<std::unique_ptr<Ed25519PrivateKey>> key =
      Ed25519PrivateKey::LoadOrCreate(key_path, public_path);
  if (!key.ok()) {
    return absl::Status(key.status().code(),
                        absl::StrCat("the audit key: ", key.status().message()));
  }
  return std::make_unique<CheckpointSigner>(*std::move(key));
}

absl::StatusOr<v1::AuditCheckpoint> CheckpointSigner::Sign(uint64_t seq, absl::string_view hash,
                                                           int64_t time_unix_ms) const {
  v1::AuditCheckpoint checkpoint;
  checkpoint.set_seq(seq);
  checkpoint.set_hash(std::string(hash));
  checkpoint.set_time_unix_ms(time_unix_ms);
  checkpoint.set_key_id(key_id_);
  absl::StatusOr<std::string> signature = key_->Sign(CheckpointSignedBytes(checkpoint));
  if (!signature.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot sign checkpoint ", seq, ": ", signature.status().message()));
  }
  checkpoint.set_signature(*std::move(signature));
  return checkpoint;
}

absl::Status VerifyCheckpoint(const Ed25519PublicKey& key, const v1::AuditCheckpoint& checkpoint) {
  if (checkpoint.seq() == 0 || !IsHexHash(checkpoint.hash())) {
    return absl::InvalidArgumentError(
        absl::StrCat(DescribeCheckpoint(checkpoint),
                     " is malformed: it needs a seq above 0 and a 64-digit lowercase hex hash"));
  }
  if (!checkpoint.key_id().empty() && checkpoint.key_id() != key.key_id()) {
    return absl::PermissionDeniedError(
        absl::StrCat(DescribeCheckpoint(checkpoint), " names audit key ", checkpoint.key_id(),
                     ", not the key it is checked against (", key.key_id(), ")"));
  }
  if (!key.Verify(CheckpointSignedBytes(checkpoint), checkpoint.signature())) {
    return absl::PermissionDeniedError(absl::StrCat(
        DescribeCheckpoint(checkpoint), " has a bad signature: it was not signed by audit key ",
        key.key_id(), " or was changed"));
  }
  return absl::OkStatus();
}

std::string DescribeCheckpoint(const v1::AuditCheckpoint& checkpoint) {
  return absl::StrCat(
      "checkpoint ", checkpoint.seq(), " (",
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(checkpoint.time_unix_ms()),
                       absl::UTCTimeZone()),
      ")");
}

}  // namespace vigil::audit
