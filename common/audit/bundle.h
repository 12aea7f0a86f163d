// Audit bundles (v1::AuditBundle): building one from the chain as it streams by, reading one
// from a file, and verifying one with nothing but the audit key's public half.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/audit/chain_hash.h"
#include "common/ed25519.h"
#include "vigil/v1/audit.pb.h"

namespace vigil::audit {

inline constexpr absl::string_view kBundleFormat = "vigil-audit-bundle/1";

// What a bundle covers: one incident, or a time range of every incident.
struct BundleScope {
  std::string incident_id;  // "" for a time range
  int64_t since_unix_ms = 0;
  int64_t until_unix_ms = 0;  // 0: no end
  bool Contains(const v1::TimelineEvent& event) const;
};

// Fed the chain's events in seq order up to and including the covering checkpoint's seq.
class BundleBuilder {
 public:
  BundleBuilder(BundleScope scope, uint64_t format2_from_seq, std::string public_key_pem,
                int64_t created_unix_ms);
  void Add(const v1::TimelineEvent& event);
  // `checkpoints`: those with seq from the first event in scope to the covering one, which is
  // the last fed event's. NotFound when no event is in scope.
  absl::StatusOr<v1::AuditBundle> Finish(std::vector<v1::AuditCheckpoint> checkpoints);
  size_t events_in_scope() const { return in_scope_; }

 private:
  BundleScope scope_;
  v1::AuditBundle bundle_;
  TimelineHasher hasher_;
  size_t in_scope_ = 0;
};

struct BundleReport {
  bool ok = false;
  std::string problem;  // when not ok: what, naming the seq
  uint64_t first_bad_seq = 0;
  uint64_t first_seq = 0;  // the range the bundle's chain covers
  uint64_t last_seq = 0;
  uint64_t events_in_scope = 0;
  v1::AuditCheckpoint covering_checkpoint;
};

// Checks `bundle` against `key` (the auditor's own copy of the audit public key; the bundle's
// copy is only compared with it): the entries chain from the first to the last, every
// checkpoint's signature verifies and its hash is the chain's at its seq, and the last
// checkpoint is at the last entry.
BundleReport VerifyBundle(const v1::AuditBundle& bundle, const Ed25519PublicKey& key);

// The bundle as written to a file (protobuf JSON, proto field names), and back. Parsing errors
// name `origin` (the file).
absl::StatusOr<std::string> BundleToJson(const v1::AuditBundle& bundle);
absl::StatusOr<v1::AuditBundle> BundleFromJson(absl::string_view json, absl::string_view origin);

}  // namespace vigil::audit
