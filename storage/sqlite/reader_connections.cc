#include "storage/sqlite/reader_connections.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace vigil::storage {

ReaderConnections::Lease::~Lease() {
  if (owner_ != nullptr) {
    owner_->Return(db_);
  }
}

ReaderConnections::ReaderConnections(std::string path, Options options)
    : path_(std::move(path)), options_(options) {}

ReaderConnections::~ReaderConnections() {
  absl::MutexLock lock(&mu_);
  for (sqlite3* db : idle_) {
    sqlite3_close_v2(db);
  }
  idle_.clear();
}

int ReaderConnections::opened() const {
  absl::MutexLock lock(&mu_);
  return opened_;
}

absl::StatusOr<ReaderConnections::Lease> ReaderConnections::Acquire() {
  const int cap = std::max(options_.max_connections, 1);
  {
    absl::MutexLock lock(&mu_);
    auto ready = [this, cap]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || opened_ + opening_ < cap;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), options_.wait)) {
      return absl::UnavailableError(
          absl::StrCat(path_, ": all ", cap, " reader connections stayed busy for ",
                       absl::FormatDuration(options_.wait)));
    }
    if (!idle_.empty()) {
      sqlite3* db = idle_.back();
      idle_.pop_back();
      return Lease(this, db);
    }
    ++opening_;
  }
  // Opening touches the file: not under the lock, so other readers go on meanwhile.
  absl::StatusOr<sqlite3*> db = Connect();
  absl::MutexLock lock(&mu_);
  --opening_;
  if (!db.ok()) {
    return db.status();
  }
  ++opened_;
  return Lease(this, *db);
}

void ReaderConnections::Return(sqlite3* db) {
  // A read transaction still open (a failed COMMIT, an early return) would pin this
  // connection to an old snapshot for every later reader.
  if (sqlite3_get_autocommit(db) == 0 &&
      sqlite3_exec(db, "ROLLBACK;", nullptr, nullptr, nullptr) != SQLITE_OK) {
    spdlog::warn("{}: a reader connection could not end its transaction ({}); closed",
                 path_, sqlite3_errmsg(db));
    sqlite3_close_v2(db);
    absl::MutexLock lock(&mu_);
    --opened_;
    return;
  }
  absl::MutexLock lock(&mu_);
  idle_.push_back(db);
}

absl::StatusOr<sqlite3*> ReaderConnections::Connect() const {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    absl::Status error = absl::UnavailableError(absl::StrCat(
        path_, ": cannot open a reader connection: ",
        db != nullptr ? sqlite3_errmsg(db) : "out of memory"));
    sqlite3_close_v2(db);
    return error;
  }
  sqlite3_busy_timeout(db, 5000);
  char* message = nullptr;
  if (sqlite3_exec(db, "PRAGMA foreign_keys=ON;", nullptr, nullptr, &message) != SQLITE_OK) {
    absl::Status error = absl::UnavailableError(
        absl::StrCat(path_, ": cannot set up a reader connection: ",
                     message != nullptr ? message : sqlite3_errmsg(db)));
    sqlite3_free(message);
    sqlite3_close_v2(db);
    return error;
  }
  return db;
}

}  // namespace vigil::storage
