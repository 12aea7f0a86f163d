// The one-server lock: a second holder is refused with the database and the holder's pid named;
// the lock is free again once its holder is gone.
#include "storage/db_lock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "tests/support/process.h"

namespace vigil::storage {
namespace {

using ::testing::HasSubstr;

TEST(DatabaseLockTest, SecondHolderIsRefusedNamingTheDatabaseAndThePid) {
  testing::TempDir dir;
  const std::string db = dir.File("vigil.db");
  absl::StatusOr<std::unique_ptr<DatabaseLock>> first = DatabaseLock::Acquire(db);
  ASSERT_TRUE(first.ok()) << first.status();
  struct stat st;
  ASSERT_EQ(stat((*first)->path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u) << "the lock file is owner-only";

  absl::StatusOr<std::unique_ptr<DatabaseLock>> second = DatabaseLock::Acquire(db);
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(db));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(absl::StrCat("pid ", getpid())));

  first->reset();
  EXPECT_TRUE(DatabaseLock::Acquire(db).ok()) << "released with its holder";
}

TEST(DatabaseLockTest, UnwritableFolderIsAnError) {
  absl::StatusOr<std::unique_ptr<DatabaseLock>> lock =
      DatabaseLock::Acquire("/nonexistent-folder/vigil.db");
  ASSERT_FALSE(lock.ok());
  EXPECT_THAT(std::string(lock.status().message()), HasSubstr("/nonexistent-folder/vigil.db.lock"));
}

}  // namespace
}  // namespace vigil::storage
