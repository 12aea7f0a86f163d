// ReaderConnections on a real WAL database in a temp dir: concurrent leases are separate
// connections with their own snapshots, a lease given back mid-transaction does not pin the next
// reader to an old snapshot, and the cap makes a reader wait, then fail with UNAVAILABLE.
#include "storage/sqlite/reader_connections.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"

namespace vigil::storage {
namespace {

class ReaderConnectionsTest : public ::testing::Test {
 protected:
  ReaderConnectionsTest() {
    char dir[] = "/tmp/vigil-readers-test-XXXXXX";
    dir_ = mkdtemp(dir);
    path_ = dir_ + "/vigil.db";
    EXPECT_EQ(sqlite3_open(path_.c_str(), &writer_), SQLITE_OK);
    Sql("PRAGMA journal_mode=WAL; CREATE TABLE t(v INTEGER); INSERT INTO t VALUES(1);");
  }
  ~ReaderConnectionsTest() override {
    sqlite3_close(writer_);
    std::filesystem::remove_all(dir_);
  }

  void Sql(const std::string& sql) {
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(writer_, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << (error ? error : "");
    sqlite3_free(error);
  }
  // Rows in t as `db` sees them now.
  static int Count(sqlite3* db) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_step(st), SQLITE_ROW);
    const int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
  }

  std::string dir_, path_;
  sqlite3* writer_ = nullptr;
};

TEST_F(ReaderConnectionsTest, ConcurrentLeasesAreSeparateSnapshots) {
  ReaderConnections readers(path_, {.max_connections = 4});
  auto first = readers.Acquire();
  ASSERT_TRUE(first.ok()) << first.status();
  // The first reader holds a snapshot (a long read such as an audit verification)...
  ASSERT_EQ(sqlite3_exec(first->db(), "BEGIN;", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_EQ(Count(first->db()), 1);
  Sql("INSERT INTO t VALUES(2);");
  // ...while another reader, on its own connection, sees the newer rows at once.
  auto second = readers.Acquire();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(first->db(), second->db());
  EXPECT_EQ(Count(second->db()), 2);
  EXPECT_EQ(Count(first->db()), 1);
  EXPECT_EQ(readers.opened(), 2);
}

TEST_F(ReaderConnectionsTest, ReturnedLeaseDoesNotKeepAnOldSnapshot) {
  ReaderConnections readers(path_, {.max_connections = 1});
  sqlite3* used = nullptr;
  {
    auto lease = readers.Acquire();
    ASSERT_TRUE(lease.ok()) << lease.status();
    used = lease->db();
    ASSERT_EQ(sqlite3_exec(lease->db(), "BEGIN;", nullptr, nullptr, nullptr), SQLITE_OK);
    EXPECT_EQ(Count(lease->db()), 1);
  }  // given back with the transaction open
  Sql("INSERT INTO t VALUES(2);");
  auto again = readers.Acquire();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->db(), used);  // the only connection, reused
  EXPECT_NE(sqlite3_get_autocommit(again->db()), 0);
  EXPECT_EQ(Count(again->db()), 2);
}

TEST_F(ReaderConnectionsTest, BeyondTheCapAReaderWaitsThenFails) {
  ReaderConnections readers(path_, {.max_connections = 1, .wait = absl::Milliseconds(50)});
  std::optional<ReaderConnections::Lease> held;
  {
    auto lease = readers.Acquire();
    ASSERT_TRUE(lease.ok()) << lease.status();
    held.emplace(std::move(*lease));
  }
  auto refused = readers.Acquire();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), path_)) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "reader connections"));

  // A waiting reader gets the connection as soon as it comes back.
  ReaderConnections patient(path_, {.max_connections = 1, .wait = absl::Seconds(30)});
  std::optional<ReaderConnections::Lease> first;
  {
    auto lease = patient.Acquire();
    ASSERT_TRUE(lease.ok());
    first.emplace(std::move(*lease));
  }
  absl::Notification got;
  std::thread waiter([&] {
    auto lease = patient.Acquire();
    EXPECT_TRUE(lease.ok()) << lease.status();
    got.Notify();
  });
  EXPECT_FALSE(got.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
  first.reset();
  EXPECT_TRUE(got.WaitForNotificationWithTimeout(absl::Seconds(10)));
  waiter.join();
  EXPECT_EQ(patient.opened(), 1);
}

TEST_F(ReaderConnectionsTest, MissingDatabaseIsUnavailableNamingThePath) {
  const std::string missing = dir_ + "/nothing-here.db";
  ReaderConnections readers(missing, {});
  auto lease = readers.Acquire();
  ASSERT_FALSE(lease.ok());
  EXPECT_EQ(lease.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(lease.status().message(), missing)) << lease.status();
  EXPECT_EQ(readers.opened(), 0);
  // The failed open gave its place back: a later reader is not refused for the cap.
  EXPECT_EQ(readers.Acquire().status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace vigil::storage
