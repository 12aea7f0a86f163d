// The agent's result journal: results keep their sequence order across restarts until they are
// acknowledged, numbering never goes back, corruption costs only the records it hits, and the
// bound drops the oldest results with a count.
#include "agent/result_journal.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tests/support/process.h"

namespace vigil::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

v1::CommandResult Result(const std::string& command_id, v1::CommandResult::Phase phase,
                         int64_t time_ms = 1000, std::string output = "") {
  v1::CommandResult r;
  r.set_command_id(command_id);
  r.set_phase(phase);
  r.set_time_unix_ms(time_ms);
  r.set_output_tail(std::move(output));
  return r;
}

std::vector<uint64_t> Sequences(const std::vector<v1::CommandResult>& results) {
  std::vector<uint64_t> out;
  for (const auto& r : results) {
    out.push_back(r.sequence());
  }
  return out;
}

std::vector<std::string> Ids(const std::vector<v1::CommandResult>& results) {
  std::vector<std::string> out;
  for (const auto& r : results) {
    out.push_back(absl::StrCat(r.command_id(), "/", v1::CommandResult::Phase_Name(r.phase())));
  }
  return out;
}

class ResultJournalTest : public ::testing::Test {
 protected:
  std::unique_ptr<ResultJournal> Open(uint64_t max_bytes = kDefaultResultJournalBytes) {
    auto journal = ResultJournal::Open({.path = path_, .max_bytes = max_bytes});
    EXPECT_TRUE(journal.ok()) << journal.status();
    return journal.ok() ? std::move(*journal) : nullptr;
  }
  uint64_t Record(ResultJournal& journal, v1::CommandResult r) {
    EXPECT_TRUE(journal.Record(r).ok());
    return r.sequence();
  }

  testing::TempDir dir_;
  const std::string path_ = dir_.File("state/web-1.results");
};

TEST_F(ResultJournalTest, RecordGivesIncreasingSequencesAndKeepsOrder) {
  auto journal = Open();
  ASSERT_NE(journal, nullptr);
  v1::CommandResult started = Result("cmd-1", v1::CommandResult::STARTED);
  ASSERT_TRUE(journal->Record(started).ok());
  EXPECT_EQ(started.sequence(), 1u);  // the caller's copy carries it, for the stream
  EXPECT_EQ(Record(*journal, Result("cmd-1", v1::CommandResult::FINISHED)), 2u);
  EXPECT_EQ(Record(*journal, Result("cmd-2", v1::CommandResult::REFUSED)), 3u);
  EXPECT_THAT(Sequences(journal->PendingAfter(0, 100)), ElementsAre(1, 2, 3));
  EXPECT_THAT(Sequences(journal->PendingAfter(1, 100)), ElementsAre(2, 3));
  EXPECT_THAT(Sequences(journal->PendingAfter(0, 2)), ElementsAre(1, 2));
  EXPECT_THAT(Ids(journal->PendingAfter(0, 100)),
              ElementsAre("cmd-1/STARTED", "cmd-1/FINISHED", "cmd-2/REFUSED"));
}

TEST_F(ResultJournalTest, AcknowledgedResultsAreGoneAlsoAfterARestart) {
  auto journal = Open();
  for (int i = 0; i < 4; ++i) {
    Record(*journal, Result(absl::StrCat("cmd-", i), v1::CommandResult::FINISHED));
  }
  journal->Acknowledge({2, 3, 99});  // 99 is unknown: ignored
  EXPECT_THAT(Sequences(journal->PendingAfter(0, 100)), ElementsAre(1, 4));
  journal.reset();
  journal = Open();
  EXPECT_THAT(Sequences(journal->PendingAfter(0, 100)), ElementsAre(1, 4));
  EXPECT_EQ(journal->stats().corrupt_records, 0u);
}

TEST_F(ResultJournalTest, RestartResendsUnacknowledgedInOrderAndNumberingContinues) {
  {
    auto journal = Open();
    Record(*journal, Result("cmd-a", v1::CommandResult::STARTED));
    Record(*journal, Result("cmd-a", v1::CommandResult::FINISHED));
    Record(*journal, Result("cmd-b", v1::CommandResult::DUPLICATE));
    // No clean shutdown: the journal is only dropped, as a kill -9 would leave it.
  }
  auto journal = Open();
  EXPECT_THAT(Ids(journal->PendingAfter(0, 100)),
              ElementsAre("cmd-a/STARTED", "cmd-a/FINISHED", "cmd-b/DUPLICATE"));
  EXPECT_EQ(Record(*journal, Result("cmd-c", v1::CommandResult::STARTED)), 4u);
  // Everything acknowledged: the file no longer holds a result, but the numbering goes on.
  journal->Acknowledge({1, 2, 3, 4});
  journal.reset();
  journal = Open();
  EXPECT_TRUE(journal->PendingAfter(0, 100).empty());
  EXPECT_EQ(Record(*journal, Result("cmd-d", v1::CommandResult::STARTED)), 5u);
  journal.reset();
  journal = Open();
  EXPECT_EQ(journal->stats().next_sequence, 6u);
}

TEST_F(ResultJournalTest, CorruptRecordIsSkippedCountedAndDoesNotBlockTheRest) {
  {
    auto journal = Open();
    Record(*journal, Result("cmd-first", v1::CommandResult::FINISHED));
    Record(*journal, Result("cmd-middle", v1::CommandResult::FINISHED));
    Record(*journal, Result("cmd-last", v1::CommandResult::FINISHED));
  }
  std::string data = ReadAll(path_);
  const size_t at = data.find("cmd-middle");
  ASSERT_NE(at, std::string::npos);
  data[at + 4] ^= 0x20;  // "cmd-Middle": the checksum no longer matches
  WriteAll(path_, data);

  auto journal = Open();
  ASSERT_NE(journal, nullptr);
  EXPECT_THAT(Ids(journal->PendingAfter(0, 100)),
              ElementsAre("cmd-first/FINISHED", "cmd-last/FINISHED"));
  EXPECT_EQ(journal->stats().corrupt_records, 1u);
  EXPECT_EQ(Record(*journal, Result("cmd-next", v1::CommandResult::STARTED)), 4u);
  // The damage is not carried on: the next start reads a clean file.
  journal.reset();
  journal = Open();
  EXPECT_EQ(journal->stats().corrupt_records, 0u);
  EXPECT_THAT(Sequences(journal->PendingAfter(0, 100)), ElementsAre(1, 3, 4));
}

TEST_F(ResultJournalTest, RecordThatVerifiesButIsNotAResultIsCounted) {
  {
    auto journal = Open();
    Record(*journal, Result("cmd-1", v1::CommandResult::FINISHED));
  }
  std::string data = ReadAll(path_);
  data += EncodeRecord("Zwhat is this");
  data += EncodeRecord("A 1 x");
  WriteAll(path_, data);
  auto journal = Open();
  ASSERT_NE(journal, nullptr);
  EXPECT_EQ(journal->stats().corrupt_records, 2u);
  // The readable part of the acknowledgement still counts.
  EXPECT_TRUE(journal->PendingAfter(0, 100).empty());
}

TEST_F(ResultJournalTest, TornTailIsCutOffAndAppendsGoOn) {
  {
    auto journal = Open();
    Record(*journal, Result("cmd-1", v1::CommandResult::STARTED));
    Record(*journal, Result("cmd-1", v1::CommandResult::FINISHED));
  }
  // A crash in the middle of the third append: half a frame at the end.
  std::string data = ReadAll(path_);
  v1::CommandResult third = Result("cmd-2", v1::CommandResult::STARTED);
  third.set_sequence(3);
  const std::string frame = EncodeRecord("R" + third.SerializeAsString());
  data += frame.substr(0, frame.size() / 2);
  WriteAll(path_, data);

  auto journal = Open();
  ASSERT_NE(journal, nullptr);
  EXPECT_THAT(Sequences(journal->PendingAfter(0, 100)), ElementsAre(1, 2));
  EXPECT_EQ(Record(*journal, Result("cmd-3", v1::CommandResult::STARTED)), 3u);
  journal.reset();
  journal = Open();
  EXPECT_THAT(Ids(journal->PendingAfter(0, 100)),
              ElementsAre("cmd-1/STARTED", "cmd-1/FINISHED", "cmd-3/STARTED"));
}

TEST_F(ResultJournalTest, FullJournalDropsTheOldestAndCountsThem) {
  const std::string output(30'000, 'x');
  // Room for about three such results.
  auto journal = Open(100'000);
  for (int i = 1; i <= 5; ++i) {
    Record(*journal, Result(absl::StrCat("cmd-", i), v1::CommandResult::FINISHED, 1000, output));
  }
  EXPECT_THAT(Sequences(journal->PendingAfter(0, 100)), ElementsAre(3, 4, 5));
  EXPECT_EQ(journal->stats().dropped, 2u);
  EXPECT_LE(journal->stats().pending_bytes, 100'000u);
  journal.reset();
  journal = Open(100'000);
  EXPECT_THAT(Sequences(journal->PendingAfter(0, 100)), ElementsAre(3, 4, 5));
  // A lower bound at the next start cuts the journal to fit.
  journal.reset();
  journal = Open(65'000);
  EXPECT_THAT(Sequences(journal->PendingAfter(0, 100)), ElementsAre(4, 5));
  EXPECT_EQ(journal->stats().dropped, 1u);
}

TEST_F(ResultJournalTest, AcknowledgementsAreCompactedAway) {
  auto journal = Open();
  const std::string output(2'000, 'o');
  for (int i = 0; i < 500; ++i) {
    const uint64_t seq =
        Record(*journal, Result(absl::StrCat("cmd-", i), v1::CommandResult::FINISHED, 1, output));
    journal->Acknowledge({seq});
  }
  // 500 results of 2 KB went through; the file holds none of them.
  EXPECT_LT(ReadAll(path_).size(), 200'000u);
  EXPECT_EQ(journal->stats().pending, 0u);
  EXPECT_EQ(journal->stats().next_sequence, 501u);
}

TEST_F(ResultJournalTest, FirstSeenIsTheEarliestPendingResultOfTheCommand) {
  auto journal = Open();
  Record(*journal, Result("cmd-1", v1::CommandResult::STARTED, 5000));
  Record(*journal, Result("cmd-1", v1::CommandResult::FINISHED, 9000));
  EXPECT_EQ(journal->FirstSeen("cmd-1"), 5000);
  EXPECT_EQ(journal->FirstSeen("cmd-2"), std::nullopt);
  journal->Acknowledge({1, 2});
  EXPECT_EQ(journal->FirstSeen("cmd-1"), std::nullopt);
}

TEST_F(ResultJournalTest, ForeignFileIsRefusedWithItsName) {
  ASSERT_TRUE(Open() != nullptr);
  WriteAll(path_, "vigil-agent command journal v2\n");
  auto journal = ResultJournal::Open({.path = path_});
  ASSERT_FALSE(journal.ok());
  EXPECT_THAT(std::string(journal.status().message()), HasSubstr(path_));
  EXPECT_THAT(std::string(journal.status().message()), HasSubstr("result journal"));
}

TEST(ResultJournal, InMemoryWithoutAPath) {
  auto journal = ResultJournal::Open({});
  ASSERT_TRUE(journal.ok());
  v1::CommandResult r = Result("cmd-1", v1::CommandResult::REFUSED);
  ASSERT_TRUE((*journal)->Record(r).ok());
  EXPECT_EQ(r.sequence(), 1u);
  (*journal)->Acknowledge({1});
  EXPECT_TRUE((*journal)->PendingAfter(0, 10).empty());
}

}  // namespace
}  // namespace vigil::agent
