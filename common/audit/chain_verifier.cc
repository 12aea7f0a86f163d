#include "common/audit/chain_verifier.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/audit/checkpoint.h"

namespace vigil::audit {

ChainVerifier::ChainVerifier(Options options) : options_(std::move(options)) {
  result_.set_ok(true);
  std::vector<v1::AuditCheckpoint>& checkpoints = options_.checkpoints;
  std::sort(
      checkpoints.begin(), checkpoints.end(),
      [](const v1::AuditCheckpoint& a, const v1::AuditCheckpoint& b) { return a.seq() < b.seq(); });
  if (options_.anchor.has_value()) {
    expected_seq_ = options_.anchor->seq();
    at_anchor_ = true;
    // Checkpoints before the anchor were checked when the anchor was.
    checkpoints.erase(
        checkpoints.begin(),
        std::lower_bound(checkpoints.begin(), checkpoints.end(), options_.anchor->seq(),
                         [](const v1::AuditCheckpoint& c, uint64_t seq) { return c.seq() < seq; }));
  }
  result_.set_verified_from_seq(expected_seq_);
  for (size_t i = 0; i < checkpoints.size() && result_.ok(); ++i) {
    const v1::AuditCheckpoint& checkpoint = checkpoints[i];
    absl::Status valid =
        options_.key != nullptr
            ? VerifyCheckpoint(*options_.key, checkpoint)
            : absl::FailedPreconditionError(absl::StrCat(
                  DescribeCheckpoint(checkpoint), " cannot be checked: no audit public key"));
    if (!valid.ok()) {
      Fail(checkpoint.seq(), std::string(valid.message()));
    } else if (i > 0 && checkpoints[i - 1].seq() == checkpoint.seq() &&
               checkpoints[i - 1].hash() != checkpoint.hash()) {
      Fail(checkpoint.seq(), absl::StrCat("two signed checkpoints give event ", checkpoint.seq(),
                                          " different hashes: the chain was forked"));
    }
    result_.set_checkpoints_checked(result_.checkpoints_checked() + 1);
  }
}

uint64_t ChainVerifier::LastGoodPoint() const {
  return std::max(last_matched_checkpoint_, result_.verified_from_seq() - 1);
}

void ChainVerifier::Fail(uint64_t seq, std::string problem) {
  if (!result_.ok()) {
    return;
  }
  result_.set_ok(false);
  result_.set_first_bad_seq(seq);
  result_.set_problem(std::move(problem));
}

bool ChainVerifier::Add(v1::TimelineEvent event) {
  if (!result_.ok()) {
    return false;
  }
  event.set_chain_format(event.seq() >= options_.format2_from_seq ? 2 : 1);
  result_.set_events_checked(result_.events_checked() + 1);
  const uint64_t seq = event.seq();
  if (seq != expected_seq_) {
    Fail(expected_seq_, absl::StrCat("event ", expected_seq_,
                                     seq > expected_seq_ ? " was removed" : " is duplicated",
                                     " (next stored event is ", seq, ")"));
    return false;
  }
  if (at_anchor_) {
    if (event.hash() != options_.anchor->hash()) {
      Fail(seq, absl::StrCat("event ", seq, " no longer has the hash of ",
                             DescribeCheckpoint(*options_.anchor),
                             ", verified before: the chain was changed up to it (run a full check "
                             "to find where)"));
      return false;
    }
  } else if (event.prev_hash() != expected_prev_) {
    Fail(seq, absl::StrCat("event ", seq, " does not follow event ", seq - 1,
                           ": its prev_hash differs (events removed or reordered)"));
    return false;
  }
  if (hasher_.Hash(event) != event.hash()) {
    Fail(seq, absl::StrCat("event ", seq, " (", event.kind(), ", incident ", event.incident_id(),
                           ") was changed: its content no longer matches its hash"));
    return false;
  }
  const std::vector<v1::AuditCheckpoint>& checkpoints = options_.checkpoints;
  while (next_checkpoint_ < checkpoints.size() && checkpoints[next_checkpoint_].seq() == seq) {
    const v1::AuditCheckpoint& checkpoint = checkpoints[next_checkpoint_++];
    if (checkpoint.hash() != event.hash()) {
      const uint64_t from = LastGoodPoint() + 1;
      Fail(from,
           absl::StrCat("event ", seq, " differs from the signed ", DescribeCheckpoint(checkpoint),
                        ": events ", from, "-", seq,
                        " were changed, inserted, removed or renumbered after it was signed"));
      return false;
    }
    last_matched_checkpoint_ = seq;
    *result_.mutable_latest_checkpoint() = checkpoint;
  }
  at_anchor_ = false;
  any_event_ = true;
  expected_prev_ = event.hash();
  ++expected_seq_;
  result_.set_head_seq(seq);
  result_.set_head_hash(event.hash());
  return true;
}

v1::VerifyAuditResponse ChainVerifier::Finish(
    std::optional<std::pair<uint64_t, std::string>> recorded_head) {
  const uint64_t last = expected_seq_ - 1;
  if (result_.ok() && at_anchor_) {
    Fail(expected_seq_,
         absl::StrCat("event ", expected_seq_, " of ", DescribeCheckpoint(*options_.anchor),
                      ", verified before, is gone: the chain was cut short"));
  }
  if (result_.ok() && next_checkpoint_ < options_.checkpoints.size()) {
    const v1::AuditCheckpoint& newest = options_.checkpoints.back();
    Fail(last + 1,
         absl::StrCat("events ", last + 1, "-", newest.seq(), " are missing: the chain ",
                      any_event_ || last > 0 ? absl::StrCat("ends at event ", last)
                                             : std::string("is empty"),
                      " but the signed ", DescribeCheckpoint(newest), " covers event ",
                      newest.seq(), " (truncated, or the database is older than its checkpoints)"));
  }
  if (result_.ok() && recorded_head.has_value() &&
      (recorded_head->first != last || (last > 0 && recorded_head->second != expected_prev_))) {
    Fail(last + 1,
         absl::StrCat("the chain ends at event ", last, " but its recorded head is event ",
                      recorded_head->first, ": events at the end were removed or changed"));
  }
  return result_;
}

}  // namespace vigil::audit
