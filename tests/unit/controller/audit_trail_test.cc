// The controller's audit trail on a real SQLite store: checkpoints signed as the chain grows,
// the check against them after every tampering the audit issue lists (an edit with every later
// hash recomputed, a deleted and renumbered event, the last events removed with their head row,
// the whole timeline truncated, the database replaced by an older copy), witnesses, the hold and
// its acceptance, and the append-only log.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "common/audit/chain_hash.h"
#include "common/audit/checkpoint.h"
#include "common/clock.h"
#include "controller/audit/audit_command.h"
#include "controller/audit/auditor.h"
#include "controller/audit/bundle_export.h"
#include "controller/audit/checkpointer.h"
#include "controller/timeline/timeline_writer.h"
#include "storage/sqlite/sqlite_store.h"
#include "tests/support/process.h"

namespace vigil::controller {
namespace {

class AuditTrailTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override { Close(); }

  void Open() {
    auto store = storage::OpenSqliteStore(db());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    writer_ = std::make_unique<TimelineWriter>(store_.get(), &clock_);
    auto signer =
        audit::CheckpointSigner::LoadOrCreate(dir_.File("audit.key"), dir_.File("audit.pub"));
    ASSERT_TRUE(signer.ok()) << signer.status();
    Checkpointer::Options options;
    options.every_events = 10;
    options.every = absl::Hours(1);  // only by count, on demand and at Stop here
    options.log_path = dir_.File("checkpoints.log");
    checkpointer_ = std::make_unique<Checkpointer>(store_.get(), &clock_, *std::move(signer),
                                                   options, writer_.get());
    writer_->AddListener([this](const v1::TimelineEvent& e) { checkpointer_->OnEvent(e); });
    auditor_ = std::make_unique<Auditor>(store_.get(), writer_.get(), &clock_);
    ASSERT_TRUE(auditor_->Init(checkpointer_->public_key_pem()).ok());
    writer_->Start();
    ASSERT_TRUE(checkpointer_->Start().ok());
  }
  void Close() {
    if (writer_ == nullptr) return;
    writer_->Stop();
    checkpointer_->Stop();
    auditor_.reset();
    checkpointer_.reset();
    writer_.reset();
    store_.reset();
  }
  std::string db() const { return dir_.File("vigil.db"); }

  absl::Status Note(const std::string& incident, const std::string& text) {
    absl::Notification done;
    absl::Status result;
    writer_->Submit(
        [incident, text](Transaction& txn) {
          txn.Append(incident, "note", "ana", text, "", nullptr);
          return absl::OkStatus();
        },
        [&](absl::Status s) {
          result = s;
          done.Notify();
        });
    done.WaitForNotification();
    return result;
  }
  void Notes(int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(Note(i % 3 == 0 ? "INC-1" : "INC-2", absl::StrCat("note ", i)).ok());
    }
  }
  void Sql(const std::string& sql) {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db().c_str(), &raw), SQLITE_OK);
    char* error = nullptr;
    const int rc = sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, &error);
    EXPECT_EQ(rc, SQLITE_OK) << (error != nullptr ? error : "") << " in " << sql;
    sqlite3_free(error);
    sqlite3_close(raw);
  }
  // Rewrites hash and prev_hash from `from` on, as someone with write access would.
  void Relink(uint64_t from) {
    auto events = store_->ListEvents("", 0, 0);
    ASSERT_TRUE(events.ok());
    audit::TimelineHasher hasher;
    std::string prev(audit::kGenesisHash);
    for (v1::TimelineEvent e : *events) {
      if (e.seq() >= from) {
        e.set_prev_hash(prev);
        e.set_hash(hasher.Hash(e));
        Sql(absl::StrCat("UPDATE timeline SET prev_hash = '", e.prev_hash(), "', hash = '",
                         e.hash(), "' WHERE seq = ", e.seq()));
      }
      prev = e.hash();
    }
    Sql(absl::StrCat("UPDATE chain_head SET seq = (SELECT MAX(seq) FROM timeline), hash = '", prev,
                     "'"));
  }
  v1::VerifyAuditResponse Verify(bool full = true) {
    v1::VerifyAuditRequest request;
    request.set_full(full);
    auto r = auditor_->Verify(request, "ana");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::VerifyAuditResponse();
  }

  testing::TempDir dir_;
  RealClock clock_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<TimelineWriter> writer_;
  std::unique_ptr<Checkpointer> checkpointer_;
  std::unique_ptr<Auditor> auditor_;
};

TEST_F(AuditTrailTest, ABurstLeavesFewerThanEveryEventsUnsigned) {
  // However the checkpointer's thread is scheduled against the writer, a burst ends with its
  // last checkpoint fewer than every_events (10 here) behind the head: nothing counted is lost
  // while one is signed or waits for its batch.
  // Submitted all at once, so the writer commits them in large groups and many land between a
  // checkpoint's signing and its batch's commit.
  absl::BlockingCounter committed(200);
  std::atomic<int> failed{0};
  for (int i = 0; i < 200; ++i) {
    writer_->Submit(
        [i](Transaction& txn) {
          txn.Append("INC-1", "note", "ana", absl::StrCat("note ", i), "", nullptr);
          return absl::OkStatus();
        },
        [&](absl::Status s) {
          if (!s.ok()) ++failed;
          committed.DecrementCount();
        });
  }
  committed.Wait();
  ASSERT_EQ(failed.load(), 0);
  EXPECT_TRUE(testing::WaitUntil(
      [&] { return checkpointer_->latest().has_value() && checkpointer_->latest()->seq() > 190; },
      absl::Seconds(30)))
      << "latest checkpoint at "
      << (checkpointer_->latest().has_value() ? checkpointer_->latest()->seq() : 0);
}

TEST_F(AuditTrailTest, CheckpointsFollowTheChainAndVerify) {
  // Each run of ten events is signed at its end: the count starts at the last signed seq, so the
  // events that land while the checkpointer's thread is late are counted, not lost.
  auto signed_at = [&](uint64_t seq) {
    return testing::WaitUntil(
        [&] {
          return checkpointer_->latest().has_value() && checkpointer_->latest()->seq() == seq;
        },
        absl::Seconds(30));
  };
  Notes(10);
  ASSERT_TRUE(signed_at(10));
  Notes(10);
  ASSERT_TRUE(signed_at(20));
  Notes(5);
  auto now = checkpointer_->CheckpointNow();
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->seq(), 25u);
  // The head has not moved: the same checkpoint, not a new one.
  EXPECT_EQ(checkpointer_->CheckpointNow()->signature(), now->signature());
  v1::VerifyAuditResponse r = Verify();
  EXPECT_TRUE(r.ok()) << r.problem();
  EXPECT_EQ(r.head_seq(), 25u);
  EXPECT_EQ(r.latest_checkpoint().seq(), 25u);
  EXPECT_GE(r.checkpoints_checked(), 2u);
  EXPECT_FALSE(r.audit_public_key_pem().empty());
  // The next check starts at that checkpoint.
  Notes(3);
  r = Verify(/*full=*/false);
  EXPECT_TRUE(r.ok()) << r.problem();
  EXPECT_EQ(r.verified_from_seq(), 25u);
  EXPECT_EQ(r.events_checked(), 4u);
  // The log holds them too, one line each.
  auto logged = LastLoggedCheckpoint(dir_.File("checkpoints.log"));
  ASSERT_TRUE(logged.ok()) << logged.status();
  EXPECT_EQ(logged->seq(), 25u);
}

TEST_F(AuditTrailTest, EveryTamperingOfTheIssueIsCaught) {
  Notes(30);
  ASSERT_TRUE(checkpointer_->CheckpointNow().ok());
  Close();
  const std::string pristine = dir_.File("pristine.db");
  std::filesystem::copy_file(db(), pristine);
  struct Case {
    const char* name;
    std::vector<std::string> sql;
    uint64_t relink_from;  // 0: none
    const char* expect;
  };
  const std::vector<Case> cases = {
      {"edit, later hashes recomputed",
       {"UPDATE timeline SET summary = 'x' WHERE seq = 12"},
       12,
       "were changed"},
      {"middle deleted, renumbered",
       {"DELETE FROM timeline WHERE seq = 7", "UPDATE timeline SET seq = seq - 1 WHERE seq > 7"},
       7,
       "were changed"},
      {"last events and head deleted",
       {"DELETE FROM timeline WHERE seq > 27", "DELETE FROM chain_head"},
       0,
       "are missing"},
      {"everything truncated, head deleted",
       {"DELETE FROM timeline", "DELETE FROM chain_head"},
       0,
       "the chain is empty"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::filesystem::copy_file(pristine, db(), std::filesystem::copy_options::overwrite_existing);
    std::filesystem::remove(db() + "-wal");
    std::filesystem::remove(db() + "-shm");
    for (const std::string& sql : c.sql) Sql(sql);
    Open();
    if (c.relink_from > 0) Relink(c.relink_from);
    v1::VerifyAuditResponse r = Verify();
    EXPECT_FALSE(r.ok());
    EXPECT_TRUE(absl::StrContains(r.problem(), c.expect)) << r.problem();
    EXPECT_GT(r.first_bad_seq(), 0u);
    Close();
  }
}

TEST_F(AuditTrailTest, AnOlderDatabaseIsARollbackThatHoldsTheTimelineUntilAccepted) {
  Notes(12);
  ASSERT_TRUE(checkpointer_->CheckpointNow().ok());
  Close();
  std::filesystem::copy_file(db(), dir_.File("old.db"));
  Open();
  Notes(9);
  auto witnessed = checkpointer_->CheckpointNow();  // what an agent or the CLI keeps
  ASSERT_TRUE(witnessed.ok());
  EXPECT_EQ(witnessed->seq(), 21u);
  Close();
  // The database is put back to the older copy: it verifies on its own.
  std::filesystem::copy_file(dir_.File("old.db"), db(),
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::remove(db() + "-wal");
  std::filesystem::remove(db() + "-shm");
  Open();
  EXPECT_TRUE(Verify().ok());
  // A forged witness (no audit key) raises nothing.
  v1::AuditCheckpoint forged = *witnessed;
  forged.set_seq(500);
  EXPECT_FALSE(auditor_->CheckWitness("agent evil", forged).has_value());
  EXPECT_TRUE(Note("INC-1", "still fine").ok());
  // The real witness does.
  std::optional<std::string> problem = auditor_->CheckWitness("agent web-1", *witnessed);
  ASSERT_TRUE(problem.has_value());
  EXPECT_TRUE(absl::StrContains(*problem, "rollback detected: agent web-1")) << *problem;
  EXPECT_TRUE(absl::StrContains(*problem, "ends at event 13")) << *problem;
  writer_->Flush();
  absl::Status refused = Note("INC-1", "after the rollback");
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "accept-rollback")) << refused;
  v1::VerifyAuditResponse r = Verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.rollback_detected());
  auto recorded = store_->ListIncidentEventsOfKind("", kRollbackDetectedKind, 1);
  ASSERT_TRUE(recorded.ok() && recorded->size() == 1);
  EXPECT_EQ(recorded->front().seq(), 14u);

  // A restart keeps the hold.
  Close();
  Open();
  EXPECT_TRUE(auditor_->hold().has_value());
  EXPECT_FALSE(Note("INC-1", "after the restart").ok());

  // An admin accepts it, from another process's command, with a reason.
  std::ostringstream out, err;
  CLI::App app;
  std::string db_path = db();
  AuditCommand command;
  CLI::App* audit = AddAuditCommands(app, &db_path, &command);
  app.parse("audit accept-rollback --reason restored-from-backup --by root", false);
  EXPECT_EQ(RunAuditCommand(*audit, command, db_path, absl::ToUnixMillis(absl::Now()), out, err), 0)
      << err.str();
  auditor_->PollAcceptance();
  EXPECT_FALSE(auditor_->hold().has_value());
  EXPECT_TRUE(Note("INC-1", "writes again").ok());
  // The old witness is from before the acceptance: no new alarm.
  EXPECT_FALSE(auditor_->CheckWitness("agent web-1", *witnessed).has_value());
  r = Verify();
  EXPECT_TRUE(r.ok()) << r.problem();
  // Nothing more to accept.
  std::ostringstream out2, err2;
  EXPECT_EQ(RunAuditCommand(*audit, command, db_path, absl::ToUnixMillis(absl::Now()), out2, err2),
            1);
  EXPECT_TRUE(absl::StrContains(err2.str(), "no rollback to accept")) << err2.str();
}

TEST_F(AuditTrailTest, AForkAtTheWitnessedSeqIsNamed) {
  Notes(10);
  auto witnessed = checkpointer_->CheckpointNow();
  ASSERT_TRUE(witnessed.ok());
  Close();
  Sql("UPDATE timeline SET summary = 'rewritten' WHERE seq = 4");
  Open();
  Relink(4);
  std::optional<std::string> problem = auditor_->CheckWitness("user ana", *witnessed);
  ASSERT_TRUE(problem.has_value());
  EXPECT_TRUE(absl::StrContains(*problem, "fork detected")) << *problem;
}

TEST_F(AuditTrailTest, ABundleOfOneIncidentVerifiesOffline) {
  Notes(30);
  auto json =
      ExportAuditBundle(*store_, *checkpointer_, audit::BundleScope{.incident_id = "INC-1"}, 1);
  ASSERT_TRUE(json.ok()) << json.status();
  auto bundle = audit::BundleFromJson(*json, "bundle");
  ASSERT_TRUE(bundle.ok());
  auto key = Ed25519PublicKey::FromPem(checkpointer_->public_key_pem());
  audit::BundleReport report = audit::VerifyBundle(*bundle, **key);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.events_in_scope, 10u);
  EXPECT_EQ(report.last_seq, 30u);
  EXPECT_EQ(ExportAuditBundle(*store_, *checkpointer_, audit::BundleScope{.incident_id = "nope"}, 1)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

TEST_F(AuditTrailTest, ATornLastLineOfTheLogIsSkipped) {
  Notes(10);
  ASSERT_TRUE(checkpointer_->CheckpointNow().ok());
  testing::WriteFile(dir_.File("torn.log"),
                     absl::StrCat(CheckpointLogLine(*checkpointer_->latest()), "{\"seq\":\"9"));
  auto logged = LastLoggedCheckpoint(dir_.File("torn.log"));
  ASSERT_TRUE(logged.ok()) << logged.status();
  EXPECT_EQ(logged->seq(), 10u);
  EXPECT_EQ(LastLoggedCheckpoint(dir_.File("none.log")).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace vigil::controller
