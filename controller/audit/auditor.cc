#include "controller/audit/auditor.h"

#include <spdlog/spdlog.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/audit/chain_verifier.h"
#include "common/audit/checkpoint.h"
#include "common/status.h"

namespace vigil::controller {

std::string AuditJsonString(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

Auditor::Auditor(storage::Store* store, TimelineWriter* writer, const Clock* clock)
    : store_(store), writer_(writer), clock_(clock) {}

absl::Status Auditor::Init(const std::string& public_key_pem) {
  ASSIGN_OR_RETURN(key_, Ed25519PublicKey::FromPem(public_key_pem));
  public_key_pem_ = public_key_pem;
  ASSIGN_OR_RETURN(std::vector<v1::TimelineEvent> detected,
                   store_->ListIncidentEventsOfKind("", kRollbackDetectedKind, 1));
  ASSIGN_OR_RETURN(auto accepted, LatestAcceptance());
  absl::MutexLock lock(&mu_);
  accepted_unix_ms_ = accepted.first;
  if (!detected.empty() && detected.front().seq() > accepted.second) {
    hold_ = detected.front().summary();
    hold_seq_ = detected.front().seq();
    spdlog::critical(
        "the audit trail is on hold since event {}: {}; the timeline takes no "
        "writes until an admin runs `vigil-controller audit accept-rollback --reason "
        "...`",
        hold_seq_, *hold_);
    writer_->SetHold(absl::FailedPreconditionError(
        absl::StrCat("the audit trail is on hold: ", *hold_,
                     "; an admin must run `vigil-controller audit accept-rollback --reason ...`")));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<int64_t, uint64_t>> Auditor::LatestAcceptance() {
  ASSIGN_OR_RETURN(std::vector<v1::TimelineEvent> accepted,
                   store_->ListIncidentEventsOfKind("", kRollbackAcceptedKind, 1));
  if (accepted.empty()) {
    return std::make_pair(int64_t{0}, uint64_t{0});
  }
  return std::make_pair(accepted.front().time_unix_ms(), accepted.front().seq());
}

std::optional<std::string> Auditor::hold() const {
  absl::MutexLock lock(&mu_);
  return hold_;
}

absl::StatusOr<v1::VerifyAuditResponse> Auditor::Verify(const v1::VerifyAuditRequest& request,
                                                        const std::string& caller) {
  if (request.has_witness()) {
    CheckWitness(absl::StrCat("user ", caller), request.witness());
  }
  std::optional<v1::AuditCheckpoint> anchor;
  if (!request.full()) {
    absl::MutexLock lock(&mu_);
    anchor = verified_;
  }
  storage::ChainSnapshot snapshot;
  std::optional<audit::ChainVerifier> verifier;
  auto start = [&] {
    if (verifier.has_value()) {
      return;
    }
    audit::ChainVerifier::Options options;
    options.key = key_.get();
    options.checkpoints = std::move(snapshot.checkpoints);
    options.format2_from_seq = snapshot.format2_from_seq;
    options.anchor = anchor;
    verifier.emplace(std::move(options));
  };
  RETURN_IF_ERROR(store_->ReadChain(anchor.has_value() ? anchor->seq() - 1 : 0, 0, &snapshot,
                                    [&](const v1::TimelineEvent& event) {
                                      start();
                                      return verifier->Add(event);
                                    }));
  start();
  v1::VerifyAuditResponse response = verifier->Finish(snapshot.recorded_head);
  response.set_audit_public_key_pem(public_key_pem_);
  {
    absl::MutexLock lock(&mu_);
    if (response.ok() && response.has_latest_checkpoint()) {
      verified_ = response.latest_checkpoint();
    } else if (!response.ok()) {
      verified_.reset();  // the next check starts from event 1
    }
    response.set_rollback_accepted_unix_ms(accepted_unix_ms_);
    if (hold_.has_value()) {
      response.set_rollback_detected(true);
      if (response.ok()) {
        response.set_ok(false);
        response.set_first_bad_seq(hold_seq_);
        response.set_problem(*hold_);
      }
    }
  }
  return response;
}

std::optional<std::string> Auditor::CheckWitness(const std::string& witness,
                                                 const v1::AuditCheckpoint& checkpoint) {
  const std::string id = absl::StrCat(checkpoint.seq(), ":", checkpoint.hash());
  {
    absl::MutexLock lock(&mu_);
    if (consistent_.contains(id)) {
      return std::nullopt;
    }
    if (hold_.has_value()) {
      return hold_;
    }
  }
  if (absl::Status valid = audit::VerifyCheckpoint(*key_, checkpoint); !valid.ok()) {
    // Nobody without the audit key can raise the alarm: a hostile peer's fake is only noted.
    spdlog::warn("{} holds an audit checkpoint this controller's key did not sign ({}); ignored",
                 witness, valid.message());
    return std::nullopt;
  }
  {
    absl::MutexLock lock(&mu_);
    if (accepted_unix_ms_ > 0 && checkpoint.time_unix_ms() <= accepted_unix_ms_) {
      return std::nullopt;  // from before a rollback an admin accepted
    }
  }
  absl::StatusOr<std::vector<v1::TimelineEvent>> at =
      store_->ListEvents("", checkpoint.seq() - 1, 1);
  if (!at.ok()) {
    spdlog::warn("cannot compare the audit checkpoint {} holds with the database: {}", witness,
                 at.status().message());
    return std::nullopt;
  }
  std::string problem;
  if (at->empty() || at->front().seq() != checkpoint.seq()) {
    absl::StatusOr<std::pair<uint64_t, std::string>> head = store_->ChainHead();
    problem = absl::StrCat(
        "rollback detected: ", witness, " holds the signed ", audit::DescribeCheckpoint(checkpoint),
        " but the database ends at event ", head.ok() ? head->first : 0,
        ": the database is older than what was witnessed (restored from an old copy?)");
  } else if (at->front().hash() != checkpoint.hash()) {
    problem = absl::StrCat("fork detected: ", witness, " holds the signed ",
                           audit::DescribeCheckpoint(checkpoint), " but the database's event ",
                           checkpoint.seq(),
                           " has another hash: the chain was rewritten at or before it");
  } else {
    absl::MutexLock lock(&mu_);
    if (consistent_.size() >= 4096) {
      consistent_.clear();
    }
    consistent_.insert(id);
    return std::nullopt;
  }
  if (!Hold(problem)) {
    return hold();
  }
  const std::string details = absl::StrCat(
      "{\"witness\":", AuditJsonString(witness), ",\"checkpoint_seq\":", checkpoint.seq(),
      ",\"checkpoint_hash\":", AuditJsonString(checkpoint.hash()),
      ",\"checkpoint_time_unix_ms\":", checkpoint.time_unix_ms(), "}");
  // Recorded first, then the hold: the record is the last write until an admin accepts.
  writer_->Submit(
      [problem, details](Transaction& txn) {
        txn.Append("", kRollbackDetectedKind, "controller", problem, details, nullptr);
        return absl::OkStatus();
      },
      [this, problem](const absl::Status& status) {
        if (!status.ok()) {
          spdlog::error("cannot record the rollback on the timeline: {}", status.message());
        }
        writer_->SetHold(absl::FailedPreconditionError(absl::StrCat(
            "the audit trail is on hold: ", problem,
            "; an admin must run `vigil-controller audit accept-rollback --reason ...`")));
      });
  return problem;
}

bool Auditor::Hold(const std::string& problem) {
  {
    absl::MutexLock lock(&mu_);
    if (hold_.has_value()) {
      return false;  // two witnesses at once: the first one's record stands
    }
    hold_ = problem;
    hold_seq_ = 0;
  }
  spdlog::critical(
      "{}; the timeline takes no writes until an admin runs `vigil-controller audit "
      "accept-rollback --reason ...`",
      problem);
  return true;
}

void Auditor::PollAcceptance() {
  uint64_t hold_seq;
  {
    absl::MutexLock lock(&mu_);
    if (!hold_.has_value()) {
      return;
    }
    hold_seq = hold_seq_;
  }
  if (hold_seq == 0) {
    // The record's seq, once stored.
    absl::StatusOr<std::vector<v1::TimelineEvent>> detected =
        store_->ListIncidentEventsOfKind("", kRollbackDetectedKind, 1);
    if (!detected.ok() || detected->empty()) {
      return;
    }
    hold_seq = detected->front().seq();
    absl::MutexLock lock(&mu_);
    hold_seq_ = hold_seq;
  }
  absl::StatusOr<std::pair<int64_t, uint64_t>> accepted = LatestAcceptance();
  if (!accepted.ok() || accepted->second <= hold_seq) {
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    hold_.reset();
    hold_seq_ = 0;
    accepted_unix_ms_ = accepted->first;
    consistent_.clear();
    verified_.reset();
  }
  writer_->SetHold(std::nullopt);
  spdlog::warn("the rollback was accepted (event {}): the timeline takes writes again",
               accepted->second);
}

}  // namespace vigil::controller
