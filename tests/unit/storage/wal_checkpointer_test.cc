// WalCheckpointer on a real WAL database in a temp dir: commits past the threshold are
// checkpointed on the checkpointer's thread (the committing connection runs none), the log
// stays bounded, and when a reader's snapshot keeps the background checkpoint from finishing
// the writer helps past its own bound, while every committed row stays readable.
#include "storage/sqlite/wal_checkpointer.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace vigil::storage {
namespace {

class WalCheckpointerTest : public ::testing::Test {
 protected:
  WalCheckpointerTest() {
    char dir[] = "/tmp/vigil-checkpointer-test-XXXXXX";
    dir_ = mkdtemp(dir);
    path_ = dir_ + "/vigil.db";
    EXPECT_EQ(sqlite3_open(path_.c_str(), &writer_), SQLITE_OK);
    Sql(writer_, "PRAGMA journal_mode=WAL; CREATE TABLE t(v BLOB);");
  }
  ~WalCheckpointerTest() override {
    sqlite3_close(writer_);
    std::filesystem::remove_all(dir_);
  }

  static void Sql(sqlite3* db, const std::string& sql) {
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << (error ? error : "");
    sqlite3_free(error);
  }
  // One commit of about `pages` 4 KiB pages of log.
  void CommitPages(int pages) {
    Sql(writer_, "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " +
                     std::to_string(pages) +
                     ") INSERT INTO t SELECT randomblob(3500) FROM n; COMMIT;");
  }
  int64_t LogBytes() const {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path_ + "-wal", ec);
    return ec ? 0 : static_cast<int64_t>(size);
  }
  static int Rows(sqlite3* db) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_step(st), SQLITE_ROW);
    const int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
  }
  // Waits (bounded) until `checkpointer` has run `n` background checkpoints.
  static bool AwaitCheckpoints(const WalCheckpointer& checkpointer, uint64_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (checkpointer.stats().checkpoints < n && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    return checkpointer.stats().checkpoints >= n;
  }

  std::string dir_;
  std::string path_;
  sqlite3* writer_ = nullptr;
};

TEST_F(WalCheckpointerTest, CommitsPastTheThresholdAreCheckpointedInTheBackground) {
  auto checkpointer = WalCheckpointer::Start(path_, {.start_pages = 50, .writer_pages = 100'000});
  ASSERT_TRUE(checkpointer.ok()) << checkpointer.status();
  (*checkpointer)->Attach(writer_);

  CommitPages(20);  // below the threshold: nobody checkpoints
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ((*checkpointer)->stats().checkpoints, 0u);

  CommitPages(20);
  CommitPages(20);  // past it: the background thread copies the log into the database
  ASSERT_TRUE(AwaitCheckpoints(**checkpointer, 1));
  CommitPages(20);  // and the next commit starts the log over from the top
  const WalCheckpointer::Stats stats = (*checkpointer)->stats();
  EXPECT_LE(stats.log_pages, 25);
  EXPECT_EQ(stats.writer_checkpoints, 0u) << "the committing thread ran no checkpoint";
  EXPECT_EQ(stats.failures, 0u);
  EXPECT_LT(LogBytes(), 100 * 4096) << "the file stays at its high-water mark, about 62 pages";
  EXPECT_EQ(Rows(writer_), 80);
  (*checkpointer)->Detach(writer_);
}

TEST_F(WalCheckpointerTest, UnderCeaselessCommitsTheLogStaysBounded) {
  // Commits back to back never leave the background checkpoint a moment to catch up with the
  // log's end, so it never restarts on its own; the writer's bound closes the gap.
  auto checkpointer = WalCheckpointer::Start(path_, {.start_pages = 50, .writer_pages = 400});
  ASSERT_TRUE(checkpointer.ok()) << checkpointer.status();
  (*checkpointer)->Attach(writer_);
  int most = 0;
  for (int i = 0; i < 100; ++i) {
    CommitPages(20);
    most = std::max(most, (*checkpointer)->stats().log_pages);
  }
  EXPECT_LE(most, 400 + 25);
  EXPECT_EQ(Rows(writer_), 2000);
  EXPECT_EQ((*checkpointer)->stats().failures, 0u);
  (*checkpointer)->Detach(writer_);
}

TEST_F(WalCheckpointerTest, TheWriterHelpsWhenTheBackgroundCannotFinish) {
  auto checkpointer = WalCheckpointer::Start(path_, {.start_pages = 10, .writer_pages = 60});
  ASSERT_TRUE(checkpointer.ok()) << checkpointer.status();
  (*checkpointer)->Attach(writer_);
  // A reader holding an old snapshot: no checkpoint can copy past it, so the log only grows.
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &reader), SQLITE_OK);
  Sql(reader, "BEGIN;");
  EXPECT_EQ(Rows(reader), 0);

  for (int i = 0; i < 8; ++i) {
    CommitPages(10);
  }
  const WalCheckpointer::Stats stats = (*checkpointer)->stats();
  EXPECT_GE(stats.writer_checkpoints, 1u) << "past writer_pages the committing thread helps";
  EXPECT_EQ(stats.failures, 0u) << "a checkpoint a reader holds back is busy, not failed";
  EXPECT_EQ(Rows(reader), 0) << "the reader keeps its snapshot";
  Sql(reader, "COMMIT;");
  EXPECT_EQ(Rows(reader), 80);

  EXPECT_GE((*checkpointer)->stats().log_pages, 60);

  // With the reader gone a checkpoint finishes and the log starts over from the top.
  for (int i = 0; i < 10; ++i) {
    CommitPages(10);
  }
  EXPECT_LT((*checkpointer)->stats().log_pages, 60);
  EXPECT_EQ(Rows(writer_), 180);
  sqlite3_close(reader);
  (*checkpointer)->Detach(writer_);
}

TEST_F(WalCheckpointerTest, AMissingDatabaseIsAClearError) {
  auto checkpointer = WalCheckpointer::Start(dir_ + "/absent/vigil.db");
  ASSERT_FALSE(checkpointer.ok());
  EXPECT_NE(checkpointer.status().message().find("absent/vigil.db"), std::string::npos)
      << checkpointer.status();
}

}  // namespace
}  // namespace vigil::storage
