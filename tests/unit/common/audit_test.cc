// The audit chain's pieces without a store: both hash formats, signed checkpoints, the streaming
// chain check against every way a writer with database access could tamper, and bundles.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/audit/bundle.h"
#include "common/audit/chain_hash.h"
#include "common/audit/chain_verifier.h"
#include "common/audit/checkpoint.h"
#include "common/ed25519.h"

namespace vigil::audit {
namespace {

// A chain of `n` events alternating between incidents "a" and "b", format 2 from `format2_from`.
std::vector<v1::TimelineEvent> MakeChain(int n, uint64_t format2_from) {
  std::vector<v1::TimelineEvent> chain;
  std::string prev(kGenesisHash);
  TimelineHasher hasher;
  for (int i = 1; i <= n; ++i) {
    v1::TimelineEvent e;
    e.set_seq(static_cast<uint64_t>(i));
    e.set_incident_id(i % 2 == 0 ? "a" : "b");
    e.set_time_unix_ms(1'000'000 + i * 1000);
    e.set_kind("note");
    e.set_actor("ana");
    e.set_summary(absl::StrCat("event ", i));
    e.set_chain_format(e.seq() >= format2_from ? 2 : 1);
    e.set_prev_hash(prev);
    e.set_hash(hasher.Hash(e));
    prev = e.hash();
    chain.push_back(e);
  }
  return chain;
}

// Re-links every event from `from` on, the way someone with write access hides an edit.
void Rehash(std::vector<v1::TimelineEvent>& chain, size_t from) {
  TimelineHasher hasher;
  for (size_t i = from; i < chain.size(); ++i) {
    chain[i].set_seq(i + 1);
    chain[i].set_chain_format(i + 1 >= 8 ? 2 : 1);
    chain[i].set_prev_hash(i == 0 ? std::string(kGenesisHash) : chain[i - 1].hash());
    chain[i].set_hash(hasher.Hash(chain[i]));
  }
}

class AuditChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = Ed25519PrivateKey::Generate();
    ASSERT_TRUE(key.ok());
    signer_ = std::make_unique<CheckpointSigner>(*std::move(key));
    auto public_key = Ed25519PublicKey::FromPem(signer_->public_key_pem());
    ASSERT_TRUE(public_key.ok());
    public_key_ = *std::move(public_key);
    chain_ = MakeChain(20, 8);
    for (uint64_t seq : {5, 10, 15}) checkpoints_.push_back(Checkpoint(seq));
  }

  v1::AuditCheckpoint Checkpoint(uint64_t seq) {
    auto signed_checkpoint = signer_->Sign(seq, chain_[seq - 1].hash(), 2'000'000 + seq);
    EXPECT_TRUE(signed_checkpoint.ok());
    return *signed_checkpoint;
  }

  v1::VerifyAuditResponse Verify(const std::vector<v1::TimelineEvent>& chain,
                                 std::optional<v1::AuditCheckpoint> anchor = std::nullopt) {
    ChainVerifier::Options options;
    options.key = public_key_.get();
    options.checkpoints = checkpoints_;
    options.format2_from_seq = 8;
    options.anchor = anchor;
    ChainVerifier verifier(std::move(options));
    for (const v1::TimelineEvent& e : chain) {
      if (anchor.has_value() && e.seq() < anchor->seq()) continue;
      if (!verifier.Add(e)) break;
    }
    return verifier.Finish();
  }

  std::unique_ptr<CheckpointSigner> signer_;
  std::unique_ptr<Ed25519PublicKey> public_key_;
  std::vector<v1::TimelineEvent> chain_;
  std::vector<v1::AuditCheckpoint> checkpoints_;
};

TEST(ChainHash, FormatTwoLinksTheContentHashAndBothFormatsDiffer) {
  v1::TimelineEvent e;
  e.set_seq(3);
  e.set_prev_hash(std::string(kGenesisHash));
  e.set_kind("note");
  e.set_summary("s");
  e.set_chain_format(2);
  TimelineHasher hasher;
  const std::string content = hasher.ContentHash(e);
  EXPECT_EQ(hasher.Hash(e), hasher.Link(e.prev_hash(), 3, content));
  // The content hash leaves out where the event sits; the link does not.
  v1::TimelineEvent moved = e;
  moved.set_seq(4);
  EXPECT_EQ(TimelineContentHash(moved), content);
  EXPECT_NE(TimelineEventHash(moved), TimelineEventHash(e));
  v1::TimelineEvent v1_event = e;
  v1_event.set_chain_format(1);
  EXPECT_NE(TimelineEventHash(v1_event), TimelineEventHash(e));
  EXPECT_TRUE(IsHexHash(content));
  EXPECT_FALSE(IsHexHash(absl::StrCat(content.substr(1), "G")));
}

TEST_F(AuditChainTest, CheckpointSignaturesCoverSeqHashAndTime) {
  v1::AuditCheckpoint c = Checkpoint(10);
  EXPECT_TRUE(VerifyCheckpoint(*public_key_, c).ok());
  EXPECT_EQ(c.key_id(), public_key_->key_id());
  EXPECT_EQ(c.key_id().size(), 16u);
  for (int field = 0; field < 3; ++field) {
    v1::AuditCheckpoint changed = c;
    if (field == 0) changed.set_seq(11);
    if (field == 1) changed.set_hash(chain_[0].hash());
    if (field == 2) changed.set_time_unix_ms(c.time_unix_ms() + 1);
    absl::Status s = VerifyCheckpoint(*public_key_, changed);
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << field;
    EXPECT_TRUE(absl::StrContains(s.message(), "bad signature")) << s.message();
  }
  auto other = Ed25519PrivateKey::Generate();
  CheckpointSigner stranger(*std::move(other));
  auto foreign = stranger.Sign(10, c.hash(), c.time_unix_ms());
  absl::Status s = VerifyCheckpoint(*public_key_, *foreign);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "names audit key")) << s.message();
  v1::AuditCheckpoint malformed = c;
  malformed.set_hash("xyz");
  EXPECT_EQ(VerifyCheckpoint(*public_key_, malformed).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AuditChainTest, AnUntouchedChainReachesItsNewestCheckpoint) {
  v1::VerifyAuditResponse r = Verify(chain_);
  EXPECT_TRUE(r.ok()) << r.problem();
  EXPECT_EQ(r.events_checked(), 20u);
  EXPECT_EQ(r.checkpoints_checked(), 3u);
  EXPECT_EQ(r.latest_checkpoint().seq(), 15u);
  EXPECT_EQ(r.head_seq(), 20u);
  EXPECT_EQ(r.head_hash(), chain_.back().hash());
}

TEST_F(AuditChainTest, AnEditWithEveryLaterHashRecomputedFailsAtTheNextCheckpoint) {
  chain_[11].set_summary("nothing to see");  // event 12
  Rehash(chain_, 11);
  v1::VerifyAuditResponse r = Verify(chain_);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_seq(), 11u);  // after checkpoint 10, the last that still matches
  EXPECT_TRUE(absl::StrContains(r.problem(), "events 11-15")) << r.problem();
}

TEST_F(AuditChainTest, ADeletedAndRenumberedMiddleEventFails) {
  chain_.erase(chain_.begin() + 6);  // event 7
  Rehash(chain_, 6);
  v1::VerifyAuditResponse r = Verify(chain_);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_seq(), 6u);
  EXPECT_TRUE(absl::StrContains(r.problem(), "checkpoint 10")) << r.problem();
}

TEST_F(AuditChainTest, AnInsertedEventFails) {
  v1::TimelineEvent extra = chain_[2];
  extra.set_summary("inserted");
  chain_.insert(chain_.begin() + 3, extra);
  Rehash(chain_, 3);
  EXPECT_FALSE(Verify(chain_).ok());
}

TEST_F(AuditChainTest, TruncationPastACheckpointNamesTheMissingRange) {
  chain_.resize(12);
  v1::VerifyAuditResponse r = Verify(chain_);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_seq(), 13u);
  EXPECT_TRUE(absl::StrContains(r.problem(), "events 13-15 are missing")) << r.problem();
  chain_.clear();
  r = Verify(chain_);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.problem(), "the chain is empty")) << r.problem();
}

TEST_F(AuditChainTest, AForgedOrForeignCheckpointFailsBeforeAnyEvent) {
  checkpoints_[1].set_hash(chain_[3].hash());
  v1::VerifyAuditResponse r = Verify(chain_);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_seq(), 10u);
  EXPECT_TRUE(absl::StrContains(r.problem(), "bad signature")) << r.problem();
}

TEST_F(AuditChainTest, IncrementalCheckStartsAtAVerifiedCheckpoint) {
  v1::VerifyAuditResponse r = Verify(chain_, checkpoints_[1]);
  EXPECT_TRUE(r.ok()) << r.problem();
  EXPECT_EQ(r.verified_from_seq(), 10u);
  EXPECT_EQ(r.events_checked(), 11u);
  // An edit after the anchor is found; one that rewrote the anchor's own hash too.
  std::vector<v1::TimelineEvent> edited = chain_;
  edited[13].set_summary("x");
  EXPECT_EQ(Verify(edited, checkpoints_[1]).first_bad_seq(), 14u);
  edited = chain_;
  edited[2].set_summary("x");
  Rehash(edited, 2);
  r = Verify(edited, checkpoints_[1]);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_seq(), 10u);
  EXPECT_TRUE(absl::StrContains(r.problem(), "verified before")) << r.problem();
}

TEST_F(AuditChainTest, ABundleOfOneIncidentVerifiesWithContentHashesOfTheOthers) {
  BundleBuilder builder(BundleScope{.incident_id = "a"}, 8, signer_->public_key_pem(), 1);
  for (size_t i = 0; i < 15; ++i) builder.Add(chain_[i]);
  auto bundle = builder.Finish(checkpoints_);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_EQ(bundle->entries(0).seq(), 2u);  // the first event of incident a
  EXPECT_EQ(bundle->checkpoints_size(), 3);
  int whole_out_of_scope = 0;
  int hashes_only = 0;
  for (const auto& entry : bundle->entries()) {
    if (!entry.in_scope() && entry.has_event()) ++whole_out_of_scope;
    if (!entry.has_event()) ++hashes_only;
  }
  EXPECT_EQ(whole_out_of_scope, 3);  // b's events 3, 5, 7 are of format 1
  EXPECT_EQ(hashes_only, 4);         // 9, 11, 13, 15
  // Through JSON, as a file would carry it.
  auto json = BundleToJson(*bundle);
  ASSERT_TRUE(json.ok()) << json.status();
  auto parsed = BundleFromJson(*json, "bundle.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  BundleReport report = VerifyBundle(*parsed, *public_key_);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.events_in_scope, 7u);
  EXPECT_EQ(report.first_seq, 2u);
  EXPECT_EQ(report.last_seq, 15u);
  EXPECT_EQ(report.covering_checkpoint.seq(), 15u);

  v1::AuditBundle edited = *parsed;
  edited.mutable_entries(4)->mutable_event()->set_summary("forged");  // event 6, in scope
  EXPECT_EQ(VerifyBundle(edited, *public_key_).first_bad_seq, 6u);
  edited = *parsed;
  edited.mutable_entries(7)->set_content_hash(std::string(kGenesisHash));  // event 9
  EXPECT_FALSE(VerifyBundle(edited, *public_key_).ok);
  edited = *parsed;
  edited.mutable_entries()->DeleteSubrange(5, 1);
  EXPECT_TRUE(absl::StrContains(VerifyBundle(edited, *public_key_).problem, "missing"));
  edited = *parsed;
  edited.mutable_entries(7)->clear_content_hash();  // event 9: a hash-only entry with nothing
  EXPECT_FALSE(VerifyBundle(edited, *public_key_).ok);
  edited = *parsed;
  edited.mutable_checkpoints()->RemoveLast();  // ends past its last checkpoint
  EXPECT_TRUE(absl::StrContains(VerifyBundle(edited, *public_key_).problem, "must end at"));
  auto other = Ed25519PrivateKey::Generate();
  auto other_public = Ed25519PublicKey::FromPem((*other)->public_key_pem());
  EXPECT_TRUE(absl::StrContains(VerifyBundle(*parsed, **other_public).problem, "public key"));
  EXPECT_FALSE(BundleFromJson("{\"format\": 3", "x.json").ok());
}

TEST_F(AuditChainTest, ATimeRangeBundleHoldsEveryIncidentInTheRange) {
  BundleBuilder builder(BundleScope{.incident_id = "", .since_unix_ms = 1'000'000 + 9 * 1000,
                                    .until_unix_ms = 1'000'000 + 12 * 1000},
                        8, signer_->public_key_pem(), 1);
  for (size_t i = 0; i < 15; ++i) builder.Add(chain_[i]);
  EXPECT_EQ(builder.events_in_scope(), 3u);  // 9, 10, 11
  auto bundle = builder.Finish(checkpoints_);
  ASSERT_TRUE(bundle.ok());
  BundleReport report = VerifyBundle(*bundle, *public_key_);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.events_in_scope, 3u);
  BundleBuilder empty(BundleScope{.incident_id = "nope"}, 8, signer_->public_key_pem(), 1);
  for (size_t i = 0; i < 15; ++i) empty.Add(chain_[i]);
  EXPECT_EQ(empty.Finish(checkpoints_).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace vigil::audit
