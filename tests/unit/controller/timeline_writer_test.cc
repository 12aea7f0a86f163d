#include "controller/timeline/timeline_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/clock.h"
#include "storage/sqlite/sqlite_store.h"
#include "tests/support/fault_store.h"
#include "tests/support/process.h"

namespace vigil::controller {
namespace {

using ::testing::HasSubstr;

class TimelineWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::OpenSqliteStore(dir_.File("vigil.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    faults_ = std::make_unique<testing::FaultInjectingStore>(store_.get());
    writer_ = std::make_unique<TimelineWriter>(faults_.get(), &clock_);
    writer_->AddListener([this](const v1::TimelineEvent& e) { heard_.push_back(e.seq()); });
  }
  void TearDown() override { writer_->Stop(); }

  // A unit that sets counter[key] = value and appends an event about it.
  TimelineWriter::Work SetAndRecord(const std::string& key, int value) {
    return [this, key, value](Transaction& txn) {
      txn.PreserveKey(counters_, key);
      counters_[key] = value;
      v1::Incident incident;
      incident.set_id("INC-0001");
      txn.Append("INC-0001", "note", "test", absl::StrCat(key, "=", value), "", &incident);
      txn.AfterCommit([this, key] { effects_.push_back(key); });
      return absl::OkStatus();
    };
  }

  testing::TempDir dir_;
  SimulatedClock clock_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<testing::FaultInjectingStore> faults_;
  std::unique_ptr<TimelineWriter> writer_;
  std::map<std::string, int> counters_;  // writer-thread state under test
  std::vector<std::string> effects_;
  std::vector<uint64_t> heard_;
};

TEST_F(TimelineWriterTest, QueuedUnitsCommitTogetherAndApplyInOrder) {
  std::vector<absl::Status> done;
  for (int i = 0; i < 100; ++i) {
    writer_->Submit(SetAndRecord(absl::StrCat("k", i), i),
                    [&done](absl::Status s) { done.push_back(s); });
  }
  writer_->Start();  // all 100 are queued: one group commit
  writer_->Flush();
  ASSERT_EQ(done.size(), 100u);
  for (const absl::Status& s : done) {
    EXPECT_TRUE(s.ok()) << s;
  }
  const TimelineWriter::Stats stats = writer_->stats();
  EXPECT_EQ(stats.commits, 1u);
  EXPECT_EQ(stats.events, 100u);
  EXPECT_EQ(counters_.size(), 100u);
  ASSERT_EQ(effects_.size(), 100u);
  EXPECT_EQ(effects_.front(), "k0");
  EXPECT_EQ(effects_.back(), "k99");
  ASSERT_EQ(heard_.size(), 100u);
  EXPECT_EQ(heard_.front(), 1u);
  EXPECT_EQ(heard_.back(), 100u);
  EXPECT_EQ(store_->ListEvents("", 0, 1000)->size(), 100u);
  EXPECT_TRUE(store_->VerifyChain()->ok());
}

TEST_F(TimelineWriterTest, AFailedCommitChangesNothingAndSaysWhy) {
  writer_->Start();
  absl::Status first = absl::UnknownError("not called");
  writer_->Submit(SetAndRecord("kept", 1), [&](absl::Status s) { first = s; });
  writer_->Flush();
  ASSERT_TRUE(first.ok());

  faults_->FailWrites();
  std::vector<absl::Status> done;
  for (int i = 0; i < 3; ++i) {
    writer_->Submit(SetAndRecord("kept", 100 + i), [&](absl::Status s) { done.push_back(s); });
    writer_->Submit(SetAndRecord(absl::StrCat("new", i), i),
                    [&](absl::Status s) { done.push_back(s); });
  }
  writer_->Flush();
  ASSERT_EQ(done.size(), 6u);
  for (const absl::Status& s : done) {
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("disk is full"));
  }
  // Memory is as the store: the old value, no new keys, no effects, nobody told.
  EXPECT_EQ(counters_, (std::map<std::string, int>{{"kept", 1}}));
  EXPECT_EQ(effects_, std::vector<std::string>{"kept"});
  EXPECT_EQ(heard_.size(), 1u);
  EXPECT_TRUE(writer_->failing());
  EXPECT_GE(writer_->stats().failures_by_cause.at("resource_exhausted"), 1u);
  EXPECT_GE(faults_->maintenance_calls(), 1u);  // it tries to give the disk space back

  // Space is back: the next write goes through by itself.
  faults_->Heal();
  absl::Status again = absl::UnknownError("not called");
  writer_->Submit(SetAndRecord("kept", 2), [&](absl::Status s) { again = s; });
  writer_->Flush();
  EXPECT_TRUE(again.ok()) << again;
  EXPECT_EQ(counters_.at("kept"), 2);
  EXPECT_FALSE(writer_->failing());
  EXPECT_EQ(store_->ListEvents("", 0, 1000)->size(), 2u);
  EXPECT_TRUE(store_->VerifyChain()->ok());
}

TEST_F(TimelineWriterTest, ARefusedUnitTakesBackOnlyItsOwnChanges) {
  writer_->Submit(SetAndRecord("a", 1));
  writer_->Submit([this](Transaction& txn) {
    txn.PreserveKey(counters_, "b");
    counters_["b"] = 2;
    txn.Append("INC-0001", "note", "test", "b=2", "", nullptr);
    return absl::FailedPreconditionError("b is not allowed");
  });
  writer_->Submit(SetAndRecord("c", 3));
  writer_->Start();
  writer_->Flush();
  EXPECT_EQ(counters_, (std::map<std::string, int>{{"a", 1}, {"c", 3}}));
  auto events = *store_->ListEvents("", 0, 100);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].summary(), "a=1");
  EXPECT_EQ(events[1].summary(), "c=3");
}

TEST_F(TimelineWriterTest, WhenTheGroupFailsEachUnitIsTriedAlone) {
  // The group commit fails once (a busy database); alone, each unit then gets through.
  std::vector<absl::Status> done;
  for (const char* key : {"a", "b", "c"}) {
    writer_->Submit(SetAndRecord(key, 1), [&](absl::Status s) { done.push_back(s); });
  }
  faults_->FailNext(1);
  writer_->Start();
  writer_->Flush();
  ASSERT_EQ(done.size(), 3u);
  for (const absl::Status& s : done) {
    EXPECT_TRUE(s.ok()) << s;
  }
  EXPECT_EQ(counters_.size(), 3u);
  EXPECT_EQ(effects_, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(store_->ListEvents("", 0, 100)->size(), 3u);
  EXPECT_EQ(faults_->failed_commits(), 1u);
  EXPECT_EQ(writer_->stats().commits, 3u);
}

TEST_F(TimelineWriterTest, StopKeepsItsDeadlineWithAFullQueueAndAcknowledgesOnlyWhatIsWritten) {
  // Far more work than the deadline allows: 20,000 units of 0.5 ms each.
  constexpr int kUnits = 20'000;
  std::atomic<int> ok{0};
  std::atomic<int> refused{0};
  std::atomic<int> other{0};
  for (int i = 0; i < kUnits; ++i) {
    writer_->Submit(
        [this, i](Transaction& txn) {
          absl::SleepFor(absl::Microseconds(500));
          const std::string key = absl::StrCat("k", i);
          txn.PreserveKey(counters_, key);
          counters_[key] = i;
          txn.Append("INC-0001", "note", "test", key, "", nullptr);
          return absl::OkStatus();
        },
        [&](absl::Status s) {
          if (s.ok()) {
            ++ok;
          } else if (absl::IsUnavailable(s) &&
                     absl::StrContains(s.message(), "the controller is stopping")) {
            ++refused;
          } else {
            ++other;
          }
        });
  }
  writer_->Start();
  absl::SleepFor(absl::Milliseconds(50));
  const absl::Time start = absl::Now();
  writer_->Stop(absl::Milliseconds(300));
  const absl::Duration took = absl::Now() - start;
  // The deadline, plus at most the unit running when it passed and one commit: far from the
  // ten seconds the queue holds.
  EXPECT_LT(took, absl::Seconds(3));
  EXPECT_EQ(ok + refused + other, kUnits);
  EXPECT_EQ(other, 0);
  EXPECT_GT(ok, 0);
  EXPECT_GT(refused, 0);
  // Acknowledged is written, and nothing else is: in the store and in memory.
  EXPECT_EQ(static_cast<int>(store_->ListEvents("", 0, 0)->size()), ok.load());
  EXPECT_EQ(static_cast<int>(counters_.size()), ok.load());
  EXPECT_TRUE(store_->VerifyChain()->ok());

  // Once stopped, new work is refused at once and Flush does not hang.
  absl::Status late = absl::UnknownError("not called");
  writer_->Submit(SetAndRecord("late", 1), [&](absl::Status s) { late = s; });
  EXPECT_TRUE(absl::IsUnavailable(late)) << late;
  writer_->Flush();
  EXPECT_FALSE(counters_.contains("late"));
  // A refused unit whose `done` submits again is refused again, not deadlocked.
  int refusals = 0;
  writer_->Submit(SetAndRecord("again", 1), [&](absl::Status s) {
    ++refusals;
    writer_->Submit(SetAndRecord("again", 2), [&](absl::Status) { ++refusals; });
  });
  EXPECT_EQ(refusals, 2);
}

TEST_F(TimelineWriterTest, StopBeforeStartRefusesWhatIsQueued) {
  absl::Status done = absl::UnknownError("not called");
  writer_->Submit(SetAndRecord("never", 1), [&](absl::Status s) { done = s; });
  writer_->Stop();
  EXPECT_TRUE(absl::IsUnavailable(done)) << done;
  EXPECT_TRUE(counters_.empty());
  EXPECT_TRUE(store_->ListEvents("", 0, 0)->empty());
}

TEST_F(TimelineWriterTest, ALiveIncidentIsSavedOnceAsItIsAtTheCommit) {
  v1::Incident live;
  live.set_id("INC-0007");
  live.set_title("first");
  v1::Incident saved_only;
  saved_only.set_id("INC-0008");
  for (int i = 0; i < 3; ++i) {
    writer_->Submit([&, i](Transaction& txn) {
      txn.Preserve(live);
      live.set_title(absl::StrCat("title ", i));
      txn.AppendLive("note", "test", absl::StrCat("event ", i), "", &live);
      return absl::OkStatus();
    });
  }
  // A refused unit's live save goes with it.
  writer_->Submit([&](Transaction& txn) {
    txn.Preserve(live);
    live.set_title("refused");
    txn.AppendLive("note", "test", "refused", "", &live);
    txn.SaveLive(&saved_only);
    return absl::FailedPreconditionError("no");
  });
  writer_->Submit([&](Transaction& txn) {
    txn.SaveLive(&saved_only);
    return absl::OkStatus();
  });
  writer_->Start();
  writer_->Flush();
  EXPECT_EQ(writer_->stats().commits, 1u);
  auto stored = store_->GetIncident("INC-0007");
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->title(), "title 2");
  EXPECT_EQ((*stored)->last_event_seq(), 3);  // its last event in the batch
  EXPECT_TRUE(store_->GetIncident("INC-0008")->has_value());
  EXPECT_EQ(store_->ListEvents("", 0, 0)->size(), 3u);
}

}  // namespace
}  // namespace vigil::controller
