// WalCheckpointer on a real WAL database in a temp dir: the log is copied back on the
// checkpointer's own thread and starts over, so it stays bounded under writes that never pause;
// a reader on an old snapshot holds the log long but never blocks the writer; and once the
// checkpointer is gone the writer's own auto-checkpoint is back.
#include "storage/sqlite/wal_checkpointer.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/support/process.h"

namespace vigil::storage {
namespace {

// Rows of 128 characters, appended in key order: about 8 pages of 4 KiB a commit.
constexpr int kRowsPerCommit = 200;
constexpr int kSlackPages = 40;  // a few commits' pages: how far past a bound the log may go

class WalCheckpointerTest : public ::testing::Test {
 protected:
  WalCheckpointerTest() {
    EXPECT_EQ(sqlite3_open(path_.c_str(), &writer_), SQLITE_OK);
    Sql(writer_,
        "PRAGMA journal_mode=WAL; PRAGMA journal_size_limit=0;"
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);");
  }
  ~WalCheckpointerTest() override { sqlite3_close(writer_); }

  static void Sql(sqlite3* db, const std::string& sql) {
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << (error ? error : "");
    sqlite3_free(error);
  }
  static int64_t Int(sqlite3* db, const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    int64_t value = -1;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      value = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return value;
  }
  // One commit, as the store makes them: BeforeWrite, then the transaction.
  void Commit(WalCheckpointer* checkpointer) {
    if (checkpointer != nullptr) {
      checkpointer->BeforeWrite();
    }
    std::string sql = "BEGIN IMMEDIATE;";
    for (int i = 0; i < kRowsPerCommit; ++i) {
      absl::StrAppend(&sql, "INSERT INTO t(v) VALUES(hex(randomblob(64)));");
    }
    Sql(writer_, sql + "COMMIT;");
  }
  int64_t LogPages() const {
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(path_ + "-wal", ec);
    return ec ? 0 : static_cast<int64_t>(bytes / 4096);
  }

  testing::TempDir dir_;
  const std::string path_ = dir_.File("vigil.db");
  sqlite3* writer_ = nullptr;
};

TEST_F(WalCheckpointerTest, TheLogStaysBoundedUnderWritesThatNeverPause) {
  const WalCheckpointer::Options options{.start_bytes = 100 * 4096, .stall_bytes = 400 * 4096};
  const int stall_frames = 400;
  auto checkpointer = WalCheckpointer::Start(writer_, path_, options);
  ASSERT_TRUE(checkpointer.ok()) << checkpointer.status();
  int64_t largest = 0;
  for (int i = 0; i < 300; ++i) {
    Commit(checkpointer->get());
    largest = std::max(largest, LogPages());
  }
  const WalCheckpointer::Stats stats = (*checkpointer)->stats();
  EXPECT_GT(stats.passes, 0u);
  EXPECT_EQ(stats.failed_passes, 0u);
  EXPECT_EQ(stats.page_size, 4096) << "the database's own";
  // Far more was written (300 commits of about 8 pages) than the log ever held: it started
  // over. At most the stall size and the commit that crossed it.
  EXPECT_GT(300 * 8, 4 * largest);
  EXPECT_LE(largest, stall_frames + kSlackPages) << "pages in the log at its largest";
  EXPECT_EQ(Int(writer_, "SELECT count(*) FROM t"), 300 * kRowsPerCommit);
  // Everything is in the database file proper once the log is copied back: another connection
  // reads it all.
  checkpointer->reset();
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  EXPECT_EQ(Int(other, "SELECT count(*) FROM t"), 300 * kRowsPerCommit);
  sqlite3_stmt* check = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(other, "PRAGMA integrity_check", -1, &check, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(check), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(check, 0)), "ok");
  sqlite3_finalize(check);
  sqlite3_close(other);
}

TEST_F(WalCheckpointerTest, AReaderOnAnOldSnapshotNeverBlocksTheWriter) {
  const WalCheckpointer::Options options{.start_bytes = 100 * 4096, .stall_bytes = 400 * 4096};
  const int stall_frames = 400;
  auto checkpointer = WalCheckpointer::Start(writer_, path_, options);
  ASSERT_TRUE(checkpointer.ok()) << checkpointer.status();
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &reader), SQLITE_OK);
  Commit(checkpointer->get());
  // A long read (an audit verification, say): its snapshot keeps the log from starting over.
  Sql(reader, "BEGIN;");
  EXPECT_EQ(Int(reader, "SELECT count(*) FROM t"), kRowsPerCommit);
  int commits = 1;
  for (; commits <= 100; ++commits) {
    Commit(checkpointer->get());
  }
  EXPECT_GT(LogPages(), stall_frames) << "the reader's snapshot holds the log";
  // Passes ran meanwhile and could not start the log over. Whether the writer ever waited for one
  // is timing (only if it came to write while a pass was due): a pass is certain, since the
  // writer waits for a due one once the log is past the stall size.
  EXPECT_GT((*checkpointer)->stats().passes, 0u);
  EXPECT_EQ(Int(reader, "SELECT count(*) FROM t"), kRowsPerCommit) << "its snapshot still";
  Sql(reader, "COMMIT;");
  sqlite3_close(reader);
  // Reader gone: the next passes catch up and the log starts over (journal_size_limit=0 cuts
  // the file back when it does). A pass is asked for every start_bytes of log (100 pages, about
  // 13 commits here), so the first pass that can copy everything may be asked for only 13
  // commits after the reader left; the log starts over at the commit after that pass. Three
  // asks' worth of commits (10 were too few once, in a run under ASan beside a build).
  for (int i = 0; i < 40 && LogPages() > stall_frames; ++i, ++commits) {
    Commit(checkpointer->get());
  }
  EXPECT_LE(LogPages(), stall_frames + kSlackPages);
  EXPECT_EQ(Int(writer_, "SELECT count(*) FROM t"), commits * kRowsPerCommit);
}

TEST_F(WalCheckpointerTest, WithoutItTheWritersOwnAutoCheckpointIsBack) {
  {
    auto checkpointer = WalCheckpointer::Start(writer_, path_, {});
    ASSERT_TRUE(checkpointer.ok()) << checkpointer.status();
    Commit(checkpointer->get());
  }
  // No hook into a destroyed object, and SQLite's own checkpoint every 1,000 pages again: 300
  // commits of about 8 pages would leave 2,400 in a log nobody copies back.
  int64_t largest = 0;
  for (int i = 0; i < 300; ++i) {
    Commit(nullptr);
    largest = std::max(largest, LogPages());
  }
  EXPECT_LE(largest, 1000 + kSlackPages) << "SQLite checkpointed inside the commits";
}

TEST_F(WalCheckpointerTest, ADatabaseItCannotOpenIsNamed) {
  auto checkpointer = WalCheckpointer::Start(writer_, dir_.File("missing/vigil.db"), {});
  ASSERT_FALSE(checkpointer.ok());
  EXPECT_NE(checkpointer.status().message().find(dir_.File("missing/vigil.db")), std::string::npos)
      << checkpointer.status();
}

}  // namespace
}  // namespace vigil::storage
