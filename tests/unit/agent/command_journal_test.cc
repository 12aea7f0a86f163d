// The command journal fails closed: missing (with evidence it existed), truncated or garbled
// journals stop the agent with the file and line; a first install and --init-journal create
// one; a torn last line is dropped; an old plain-id journal is upgraded.
#include "agent/command_journal.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "tests/support/process.h"

namespace vigil::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string Read(const std::string& path) { return testing::ReadFileOrEmpty(path); }

std::string Journal(const std::vector<std::string>& ids) {
  std::string text = absl::StrCat(kJournalHeader, "\n");
  for (size_t i = 0; i < ids.size(); ++i) {
    text += JournalEntryLine(i + 1, ids[i]);
  }
  return text;
}

TEST(Crc32, MatchesTheStandardCheckValue) {
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(Crc32(""), 0u);
}

TEST(ParseCommandJournal, ReadsEntries) {
  auto parsed = ParseCommandJournal(Journal({"cmd-a", "cmd-b"}), "j");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->ids, (std::vector<std::string>{"cmd-a", "cmd-b"}));
  EXPECT_FALSE(parsed->legacy);
  EXPECT_FALSE(parsed->torn_tail);
}

TEST(ParseCommandJournal, GarbledLinesNameFileLineAndOffset) {
  const std::string good = Journal({"cmd-a", "cmd-b", "cmd-c"});
  // A flipped character in the second entry's id: the checksum no longer matches.
  std::string flipped = good;
  flipped[flipped.find("cmd-b")] = 'x';
  auto parsed = ParseCommandJournal(flipped, "/var/lib/j");
  ASSERT_FALSE(parsed.ok());
  const size_t offset = good.find("2 cmd-b");
  EXPECT_THAT(std::string(parsed.status().message()),
              StartsWith(absl::StrCat("/var/lib/j:3 (byte ", offset, "): garbled entry")));
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("checksum does not match"));

  // A line of noise.
  parsed = ParseCommandJournal(good + "\x01\x02 zz\n", "j");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), StartsWith("j:5 "));

  // An entry removed from the middle: the sequence has a hole.
  std::string holed = absl::StrCat(kJournalHeader, "\n", JournalEntryLine(1, "cmd-a"),
                                   JournalEntryLine(3, "cmd-c"));
  parsed = ParseCommandJournal(holed, "j");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("j:3"));
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("entries are missing"));

  // An unknown version.
  parsed = ParseCommandJournal("vigil-agent command journal v9\n", "j");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("unknown journal version"));
}

TEST(ParseCommandJournal, TruncationIsAnError) {
  auto parsed = ParseCommandJournal("", "j");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()),
              HasSubstr("j:1 (byte 0): the journal is empty"));
  parsed = ParseCommandJournal("vigil-agent comm", "j");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("header is cut short"));
  // Cut inside an entry that is followed by others is garbled, not torn.
  std::string text = Journal({"cmd-a", "cmd-b"});
  text.erase(text.find("cmd-a") + 3, 5);
  parsed = ParseCommandJournal(text, "j");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("j:2"));
}

TEST(ParseCommandJournal, TornLastLineIsDropped) {
  const std::string text = Journal({"cmd-a"}) + "2 cmd-b 12";
  auto parsed = ParseCommandJournal(text, "j");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->ids, std::vector<std::string>{"cmd-a"});
  EXPECT_TRUE(parsed->torn_tail);
  EXPECT_EQ(parsed->torn_text, "2 cmd-b 12");
  // A complete entry missing only its newline is kept: that command may have run.
  std::string whole = Journal({"cmd-a", "cmd-b"});
  whole.pop_back();
  parsed = ParseCommandJournal(whole, "j");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->ids, (std::vector<std::string>{"cmd-a", "cmd-b"}));
}

TEST(ParseCommandJournal, NoiseWithoutANewlineIsNotAJournal) {
  auto parsed = ParseCommandJournal(std::string(10, '\0'), "j");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("j:1 (byte 0)"));
}

TEST(ParseCommandJournal, LegacyPlainIds) {
  auto parsed = ParseCommandJournal("cmd-1\ncmd-2\n", "j");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->legacy);
  EXPECT_EQ(parsed->ids, (std::vector<std::string>{"cmd-1", "cmd-2"}));
  parsed = ParseCommandJournal("cmd-1\ncmd 2\n", "j");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("j:2"));
}

class CommandJournalTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  std::string path_ = dir_.File("state/web-1.journal");
};

TEST_F(CommandJournalTest, FirstInstallCreatesJournalAndMarker) {
  auto journal = CommandJournal::Open(path_, /*init=*/false);
  ASSERT_TRUE(journal.ok()) << journal.status();
  EXPECT_EQ(Read(path_), absl::StrCat(kJournalHeader, "\n"));
  EXPECT_TRUE(std::filesystem::exists(CommandJournal::MarkerPath(path_)));
  ASSERT_TRUE((*journal)->Append("cmd-1").ok());
  EXPECT_EQ(Read(path_), Journal({"cmd-1"}));
  EXPECT_FALSE((*journal)->Append("cmd 1\nx").ok());  // not an id: never written
  EXPECT_EQ(Read(path_), Journal({"cmd-1"}));
}

TEST_F(CommandJournalTest, EntriesSurviveAReopen) {
  {
    auto journal = CommandJournal::Open(path_, false);
    ASSERT_TRUE(journal.ok());
    ASSERT_TRUE((*journal)->Append("cmd-1").ok());
    ASSERT_TRUE((*journal)->Append("cmd-2").ok());
  }
  auto journal = CommandJournal::Open(path_, false);
  ASSERT_TRUE(journal.ok()) << journal.status();
  EXPECT_TRUE((*journal)->Contains("cmd-1"));
  EXPECT_TRUE((*journal)->Contains("cmd-2"));
  EXPECT_FALSE((*journal)->Contains("cmd-3"));
  ASSERT_TRUE((*journal)->Append("cmd-3").ok());
  EXPECT_EQ(Read(path_), Journal({"cmd-1", "cmd-2", "cmd-3"}));
}

TEST_F(CommandJournalTest, DeletedJournalRefusesUnlessInit) {
  ASSERT_TRUE(CommandJournal::Open(path_, false).ok());
  ASSERT_EQ(unlink(path_.c_str()), 0);
  auto refused = CommandJournal::Open(path_, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr(path_ + " is missing"));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("--init-journal"));
  EXPECT_FALSE(std::filesystem::exists(path_));  // nothing created behind the operator's back

  auto fresh = CommandJournal::Open(path_, /*init=*/true);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ((*fresh)->size(), 0u);
  EXPECT_EQ(Read(path_), absl::StrCat(kJournalHeader, "\n"));
}

TEST_F(CommandJournalTest, AnyEarlierJournalFileIsEvidence) {
  std::filesystem::create_directories(dir_.File("state"));
  testing::WriteFile(path_ + ".tmp", "half a rewrite");
  auto refused = CommandJournal::Open(path_, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr(path_ + ".tmp shows"));
}

TEST_F(CommandJournalTest, TruncatedJournalRefusesNamingTheFile) {
  {
    auto journal = CommandJournal::Open(path_, false);
    ASSERT_TRUE(journal.ok());
    ASSERT_TRUE((*journal)->Append("cmd-1").ok());
  }
  ASSERT_EQ(truncate(path_.c_str(), 0), 0);
  auto refused = CommandJournal::Open(path_, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr(path_ + ":1 (byte 0)"));
  testing::WriteFile(path_, std::string(kJournalHeader.substr(0, 10)));  // cut in the header
  refused = CommandJournal::Open(path_, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("cut short"));
}

TEST_F(CommandJournalTest, GarbledJournalRefusesNamingLineAndOffset) {
  {
    auto journal = CommandJournal::Open(path_, false);
    ASSERT_TRUE(journal.ok());
    ASSERT_TRUE((*journal)->Append("cmd-1").ok());
    ASSERT_TRUE((*journal)->Append("cmd-2").ok());
  }
  std::string text = Read(path_);
  const size_t at = text.find("cmd-1");
  text[at + 4] = '7';
  testing::WriteFile(path_, text);
  auto refused = CommandJournal::Open(path_, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr(absl::StrCat(path_, ":2 (byte ", at - 2, "): garbled entry")));
  // --init-journal does not paper over a damaged journal.
  EXPECT_FALSE(CommandJournal::Open(path_, true).ok());
}

TEST_F(CommandJournalTest, TornLastLineIsDroppedAndRewritten) {
  {
    auto journal = CommandJournal::Open(path_, false);
    ASSERT_TRUE(journal.ok());
    ASSERT_TRUE((*journal)->Append("cmd-1").ok());
  }
  testing::WriteFile(path_, Read(path_) + "2 cmd-");
  auto journal = CommandJournal::Open(path_, false);
  ASSERT_TRUE(journal.ok()) << journal.status();
  EXPECT_EQ((*journal)->size(), 1u);
  EXPECT_EQ(Read(path_), Journal({"cmd-1"}));
  ASSERT_TRUE((*journal)->Append("cmd-2").ok());
  EXPECT_EQ(Read(path_), Journal({"cmd-1", "cmd-2"}));
}

TEST_F(CommandJournalTest, OldFormatIsReadAndUpgraded) {
  std::filesystem::create_directories(dir_.File("state"));
  testing::WriteFile(path_, "cmd-1\ncmd-2\n");  // as earlier versions wrote it, with no marker
  auto journal = CommandJournal::Open(path_, false);
  ASSERT_TRUE(journal.ok()) << journal.status();
  EXPECT_TRUE((*journal)->Contains("cmd-1"));
  EXPECT_TRUE((*journal)->Contains("cmd-2"));
  EXPECT_EQ(Read(path_), Journal({"cmd-1", "cmd-2"}));
  EXPECT_TRUE(std::filesystem::exists(CommandJournal::MarkerPath(path_)));
}

TEST_F(CommandJournalTest, ADirectoryIsNotAJournal) {
  std::filesystem::create_directories(path_);
  auto refused = CommandJournal::Open(path_, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("not a regular file"));
}

}  // namespace
}  // namespace vigil::agent
