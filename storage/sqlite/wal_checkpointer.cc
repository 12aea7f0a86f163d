#include "storage/sqlite/wal_checkpointer.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace vigil::storage {

absl::StatusOr<std::unique_ptr<WalCheckpointer>> WalCheckpointer::Start(std::string path,
                                                                        Options options) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    std::string message = absl::StrCat(path, ": cannot open for checkpoints: ",
                                       db != nullptr ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close_v2(db);
    return absl::UnavailableError(message);
  }
  // A fresh connection knows nothing of the log until it reads the database: until then a
  // checkpoint is a no-op (it reports -1 pages). Reading the journal mode opens the log.
  std::string mode;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    mode = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  }
  sqlite3_finalize(st);
  if (mode != "wal") {
    std::string message =
        absl::StrCat(path, ": cannot checkpoint: ",
                     mode.empty() ? std::string(sqlite3_errmsg(db))
                                  : absl::StrCat("the journal mode is ", mode, ", not wal"));
    sqlite3_close_v2(db);
    return absl::FailedPreconditionError(message);
  }
  // A checkpoint waits briefly for the writer's own (past writer_pages) rather than failing.
  sqlite3_busy_timeout(db, 1000);
  return std::unique_ptr<WalCheckpointer>(new WalCheckpointer(std::move(path), options, db));
}

WalCheckpointer::WalCheckpointer(std::string path, Options options, sqlite3* db)
    : path_(std::move(path)), options_(options), db_(db) {
  thread_ = std::thread([this] { Loop(); });
}

WalCheckpointer::~WalCheckpointer() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
  sqlite3_close_v2(db_);
}

void WalCheckpointer::Attach(sqlite3* writer) {
  // sqlite3_wal_hook replaces the autocheckpoint hook: from here on the log is this object's.
  sqlite3_wal_hook(writer, &WalCheckpointer::OnCommit, this);
}

void WalCheckpointer::Detach(sqlite3* writer) {
  sqlite3_wal_autocheckpoint(writer, options_.start_pages);
}

WalCheckpointer::Stats WalCheckpointer::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

int WalCheckpointer::CheckpointNow(sqlite3* db, int mode, int* logged, int* copied) {
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](WalCheckpointer* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return !self->running_ && !self->held_;
        },
        this));
    held_ = true;
  }
  const int rc = sqlite3_wal_checkpoint_v2(db, nullptr, mode, logged, copied);
  absl::MutexLock lock(&mu_);
  held_ = false;
  return rc;
}

int WalCheckpointer::OnCommit(void* self_ptr, sqlite3* writer, const char* /*schema*/,
                              int pages) {
  auto* self = static_cast<WalCheckpointer*>(self_ptr);
  {
    absl::MutexLock lock(&self->mu_);
    self->stats_.log_pages = pages;
    self->wanted_ = self->wanted_ || pages >= self->options_.start_pages;
  }
  if (pages >= self->options_.writer_pages) {
    // Fallen behind: the committing thread copies what the background has not, as SQLite's
    // default hook would, and the next commit starts the log over. Its result is not the
    // commit's (which has succeeded): a failure is counted, and tried again next commit.
    const int rc = self->CheckpointNow(writer, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    absl::MutexLock lock(&self->mu_);
    ++self->stats_.writer_checkpoints;
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      ++self->stats_.failures;
    }
  }
  return SQLITE_OK;
}

void WalCheckpointer::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](WalCheckpointer* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return (self->wanted_ && !self->held_) || self->stop_;
          },
          this));
      if (stop_) {
        return;
      }
      wanted_ = false;
      running_ = true;
    }
    int logged = 0;
    int copied = 0;
    const int rc =
        sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &logged, &copied);
    const bool failed = rc != SQLITE_OK && rc != SQLITE_BUSY;
    {
      absl::MutexLock lock(&mu_);
      running_ = false;
      ++stats_.checkpoints;
      stats_.failures += failed ? 1 : 0;
    }
    // Nothing is lost: the pages stay in the log, and the next commit past the threshold asks
    // again (a full disk frees up, a reader lets go of its snapshot).
    if (uint64_t suppressed = 0; failed && failure_log_.Allow(absl::Now(), &suppressed)) {
      spdlog::warn("{}: background checkpoint failed: {}; the log keeps the pages ({} similar "
                   "failures not logged)",
                   path_, sqlite3_errmsg(db_), suppressed);
    }
  }
}

}  // namespace vigil::storage
