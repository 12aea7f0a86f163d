#include "agent/state_migration.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/support/process.h"

namespace vigil::agent {
namespace {

using testing::ReadFileOrEmpty;
using testing::TempDir;
using testing::WriteFile;

bool Exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

// A config with the default names beside a journal in `dir`, as the agent computes them.
AgentConfig DefaultsIn(const std::string& dir, const std::string& id) {
  AgentConfig config;
  config.id = id;
  config.journal_path = absl::StrCat(dir, "/", id, ".journal");
  config.spool_dir = DefaultSpoolDir(config.journal_path, id);
  return config;
}

// What an agent of the previous version leaves in its state folder.
void WriteOldState(const std::string& old_dir, const std::string& id) {
  mkdir(old_dir.c_str(), 0700);
  WriteFile(absl::StrCat(old_dir, "/", id, ".journal"), "journal\n");
  WriteFile(absl::StrCat(old_dir, "/", id, ".journal.created"), "marker\n");
  WriteFile(absl::StrCat(old_dir, "/", id, ".results"), "results\n");
  mkdir(absl::StrCat(old_dir, "/", id, ".spool").c_str(), 0700);
  WriteFile(absl::StrCat(old_dir, "/", id, ".spool/telemetry.spool"), "spool\n");
}

TEST(StateMigrationTest, MovesJournalMarkerResultsAndSpoolToTheNewFolder) {
  TempDir dir;
  const std::string old_dir = dir.File("vigil-agent");
  const std::string new_dir = dir.File("vigil");  // created by the move
  WriteOldState(old_dir, "web-1");
  const AgentConfig config = DefaultsIn(new_dir, "web-1");

  ASSERT_TRUE(MoveLegacyAgentState(old_dir, config).ok());
  EXPECT_EQ(ReadFileOrEmpty(new_dir + "/web-1.journal"), "journal\n");
  EXPECT_EQ(ReadFileOrEmpty(new_dir + "/web-1.journal.created"), "marker\n");
  EXPECT_EQ(ReadFileOrEmpty(new_dir + "/web-1.results"), "results\n");
  EXPECT_EQ(ReadFileOrEmpty(new_dir + "/web-1.spool/telemetry.spool"), "spool\n");
  EXPECT_FALSE(Exists(old_dir)) << "the emptied old folder is removed";

  // A second start finds the journal in place and moves nothing.
  ASSERT_TRUE(MoveLegacyAgentState(old_dir, config).ok());
  EXPECT_EQ(ReadFileOrEmpty(new_dir + "/web-1.journal"), "journal\n");
}

TEST(StateMigrationTest, LeavesOtherAgentsFilesAndNamedPlacesAlone) {
  TempDir dir;
  const std::string old_dir = dir.File("old");
  const std::string new_dir = dir.File("new");
  WriteOldState(old_dir, "web-1");
  WriteOldState(old_dir, "web-2");
  AgentConfig config = DefaultsIn(new_dir, "web-1");
  config.spool_dir = dir.File("elsewhere.spool");   // named in the config: not the old default
  config.result_journal_path = dir.File("r.results");

  ASSERT_TRUE(MoveLegacyAgentState(old_dir, config).ok());
  EXPECT_TRUE(Exists(new_dir + "/web-1.journal"));
  EXPECT_TRUE(Exists(old_dir + "/web-1.spool")) << "the config names another spool";
  EXPECT_TRUE(Exists(old_dir + "/web-1.results")) << "the config names another result journal";
  EXPECT_FALSE(Exists(config.spool_dir));
  EXPECT_TRUE(Exists(old_dir + "/web-2.journal")) << "another id's journal is not ours";
  EXPECT_FALSE(Exists(new_dir + "/web-2.journal"));
}

TEST(StateMigrationTest, NothingToMoveIsFine) {
  TempDir dir;
  EXPECT_TRUE(MoveLegacyAgentState(dir.File("missing"), DefaultsIn(dir.File("new"), "a")).ok());
  EXPECT_FALSE(Exists(dir.File("new")));
}

TEST(StateMigrationTest, NewJournalInUseWinsAndTheOldOneStays) {
  TempDir dir;
  const std::string old_dir = dir.File("old");
  const std::string new_dir = dir.File("new");
  WriteOldState(old_dir, "web-1");
  mkdir(new_dir.c_str(), 0700);
  WriteFile(new_dir + "/web-1.journal", "newer\n");
  ASSERT_TRUE(MoveLegacyAgentState(old_dir, DefaultsIn(new_dir, "web-1")).ok());
  EXPECT_EQ(ReadFileOrEmpty(new_dir + "/web-1.journal"), "newer\n");
  EXPECT_EQ(ReadFileOrEmpty(old_dir + "/web-1.journal"), "journal\n");
  EXPECT_FALSE(Exists(new_dir + "/web-1.results"));
}

TEST(StateMigrationTest, AnOccupiedDestinationRefusesBeforeAnythingMoves) {
  TempDir dir;
  const std::string old_dir = dir.File("old");
  const std::string new_dir = dir.File("new");
  WriteOldState(old_dir, "web-1");
  mkdir(new_dir.c_str(), 0700);
  WriteFile(new_dir + "/web-1.results", "someone else's\n");
  absl::Status s = MoveLegacyAgentState(old_dir, DefaultsIn(new_dir, "web-1"));
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), old_dir + "/web-1.results")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), new_dir + "/web-1.results")) << s;
  EXPECT_TRUE(Exists(old_dir + "/web-1.journal"));
  EXPECT_TRUE(Exists(old_dir + "/web-1.spool")) << "checked before the first move";
  EXPECT_FALSE(Exists(new_dir + "/web-1.spool"));
}

TEST(StateMigrationTest, AnInterruptedMoveResumes) {
  TempDir dir;
  const std::string old_dir = dir.File("old");
  const std::string new_dir = dir.File("new");
  WriteOldState(old_dir, "web-1");
  // As if the spool had been moved when the agent died.
  mkdir(new_dir.c_str(), 0700);
  ASSERT_EQ(rename((old_dir + "/web-1.spool").c_str(), (new_dir + "/web-1.spool").c_str()), 0);
  ASSERT_TRUE(MoveLegacyAgentState(old_dir, DefaultsIn(new_dir, "web-1")).ok());
  EXPECT_EQ(ReadFileOrEmpty(new_dir + "/web-1.journal"), "journal\n");
  EXPECT_EQ(ReadFileOrEmpty(new_dir + "/web-1.results"), "results\n");
  EXPECT_EQ(ReadFileOrEmpty(new_dir + "/web-1.spool/telemetry.spool"), "spool\n");
}

TEST(StateMigrationTest, AcrossFilesystemsItRefusesNamingBothPaths) {
  // /dev/shm is a tmpfs on most hosts; where it shares /tmp's filesystem there is no second one.
  struct stat shm {}, tmp {};
  if (stat("/dev/shm", &shm) != 0 || stat("/tmp", &tmp) != 0 || shm.st_dev == tmp.st_dev ||
      access("/dev/shm", W_OK) != 0) {
    GTEST_SKIP() << "no second filesystem (/dev/shm) to move across";
  }
  char pattern[] = "/dev/shm/vigil-migration.XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::string old_dir = pattern;
  TempDir dir;
  const std::string new_dir = dir.File("new");
  WriteOldState(old_dir, "web-1");
  absl::Status s = MoveLegacyAgentState(old_dir, DefaultsIn(new_dir, "web-1"));
  const bool old_kept = Exists(old_dir + "/web-1.journal") && Exists(old_dir + "/web-1.spool");
  std::system(absl::StrCat("rm -rf '", old_dir, "'").c_str());
  EXPECT_TRUE(old_kept);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "different filesystems")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), old_dir + "/web-1.")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), new_dir + "/web-1.")) << s;
  EXPECT_FALSE(Exists(new_dir + "/web-1.journal"));
}

}  // namespace
}  // namespace vigil::agent
