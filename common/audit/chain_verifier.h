// Checks a stretch of the audit chain as it streams by, event after event in seq order: every
// event's seq follows the one before, its prev_hash is that event's hash, its hash matches its
// content (in its chain format), and the chain passes through every signed checkpoint it
// reaches and reaches the newest one. Used by the controller over its store and by anyone over
// an export. One thread; memory does not grow with the chain.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/audit/chain_hash.h"
#include "common/ed25519.h"
#include "vigil/v1/audit.pb.h"
#include "vigil/v1/control_service.pb.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::audit {

class ChainVerifier {
 public:
  struct Options {
    // The audit key's public half; null when there is none (checkpoints are then not trusted
    // and must be empty).
    const Ed25519PublicKey* key = nullptr;
    // Every checkpoint that covers the stretch, in any order.
    std::vector<v1::AuditCheckpoint> checkpoints;
    // Events from this seq on follow chain format 2; earlier ones format 1.
    uint64_t format2_from_seq = 1;
    // An incremental check starts at a checkpoint verified before: the first event fed must be
    // event `anchor.seq` and have `anchor.hash`. Without one the check starts at event 1.
    std::optional<v1::AuditCheckpoint> anchor;
  };

  explicit ChainVerifier(Options options);

  // The next event. False once the chain is found broken (later events are ignored).
  bool Add(v1::TimelineEvent event);

  // After the last event. `recorded_head`: the head the store recorded beside the chain, if it
  // keeps one (catches events removed at the end past the last checkpoint).
  v1::VerifyAuditResponse Finish(
      std::optional<std::pair<uint64_t, std::string>> recorded_head = std::nullopt);

  bool ok() const { return result_.ok(); }
  // The seq the next event must have.
  uint64_t expected_seq() const { return expected_seq_; }

 private:
  void Fail(uint64_t seq, std::string problem);
  // The checkpoint before `seq` that matched (its seq), or where the check started.
  uint64_t LastGoodPoint() const;

  Options options_;
  v1::VerifyAuditResponse result_;
  TimelineHasher hasher_;
  size_t next_checkpoint_ = 0;  // index into options_.checkpoints (sorted by seq)
  uint64_t last_matched_checkpoint_ = 0;
  uint64_t expected_seq_ = 1;
  std::string expected_prev_{kGenesisHash};
  bool at_anchor_ = false;
  bool any_event_ = false;
};

}  // namespace vigil::audit
