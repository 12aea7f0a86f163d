#include "storage/sqlite/wal_checkpointer.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace vigil::storage {

absl::StatusOr<std::unique_ptr<WalCheckpointer>> WalCheckpointer::Start(sqlite3* writer,
                                                                        const std::string& path,
                                                                        Options options) {
  sqlite3* own = nullptr;
  if (sqlite3_open_v2(path.c_str(), &own, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    absl::Status error = absl::UnavailableError(
        absl::StrCat(path, ": cannot open a connection for checkpoints: ", sqlite3_errmsg(own)));
    sqlite3_close_v2(own);
    return error;
  }
  // FULL: the database file is synced before the log is started over, as the writer's own
  // checkpoints did.
  char* message = nullptr;
  if (sqlite3_exec(own, "PRAGMA synchronous=FULL;", nullptr, nullptr, &message) != SQLITE_OK) {
    absl::Status error = absl::UnavailableError(
        absl::StrCat(path, ": cannot set up checkpoints: ", message ? message : "unknown error"));
    sqlite3_free(message);
    sqlite3_close_v2(own);
    return error;
  }
  int64_t page_size = 4096;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(own, "PRAGMA page_size", -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) > 0) {
    page_size = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  return std::unique_ptr<WalCheckpointer>(new WalCheckpointer(writer, own, options, page_size));
}

WalCheckpointer::WalCheckpointer(sqlite3* writer, sqlite3* own, Options options,
                                 int64_t page_size)
    : writer_(writer),
      own_(own),
      start_frames_(static_cast<int>(std::max<int64_t>(1, options.start_bytes / page_size))),
      stall_frames_(static_cast<int>(std::max<int64_t>(1, options.stall_bytes / page_size))) {
  stats_.page_size = page_size;
  sqlite3_wal_hook(writer_, &WalCheckpointer::OnCommit, this);
  thread_ = std::thread([this] { Loop(); });
}

WalCheckpointer::~WalCheckpointer() {
  sqlite3_wal_autocheckpoint(writer_, 1000);  // SQLite's default; replaces our hook
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
  sqlite3_close_v2(own_);
}

int WalCheckpointer::OnCommit(void* self, sqlite3* /*db*/, const char* /*schema*/, int frames) {
  auto* checkpointer = static_cast<WalCheckpointer*>(self);
  absl::MutexLock lock(&checkpointer->mu_);
  checkpointer->stats_.last_log_frames = frames;
  // A pass for every start_frames pages written since the last one asked for (the log started
  // over when it is shorter than it was then): one per commit would copy the pages that every
  // commit changes (the chain head, the index's last leaf) again each time, and sync each time.
  int& since = checkpointer->frames_when_asked_;
  if (frames < since) {
    since = 0;
  }
  if (frames - since >= checkpointer->start_frames_) {
    ++checkpointer->asked_;
    since = frames;
  }
  return SQLITE_OK;
}

void WalCheckpointer::BeforeWrite() {
  absl::MutexLock lock(&mu_);
  if (stats_.last_log_frames < stall_frames_ || done_ >= asked_) {
    return;
  }
  ++stats_.writer_stalls;
  // The pass that covers this writer's last commit: after it the log can start over.
  const uint64_t wanted = asked_;
  const auto covered = [this, wanted]()
                           ABSL_NO_THREAD_SAFETY_ANALYSIS { return done_ >= wanted || stopping_; };
  mu_.Await(absl::Condition(&covered));
}

WalCheckpointer::Stats WalCheckpointer::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void WalCheckpointer::Loop() {
  while (true) {
    uint64_t covering = 0;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](WalCheckpointer* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->asked_ > self->done_ || self->stopping_;
          },
          this));
      if (stopping_) {
        return;
      }
      covering = asked_;  // every commit so far is in the log this pass starts from
    }
    int logged = 0;
    int copied = 0;
    // PASSIVE: copies what no reader still needs, never waits for a reader or the writer.
    const int rc =
        sqlite3_wal_checkpoint_v2(own_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &logged, &copied);
    absl::MutexLock lock(&mu_);
    done_ = covering;
    ++stats_.passes;
    // BUSY: another checkpoint (the store's periodic TRUNCATE) holds the log; it does the work.
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      ++stats_.failed_passes;
      std::string error = sqlite3_errmsg(own_);
      if (error != stats_.last_error) {
        spdlog::warn("database checkpoint failed: {} (the log grows until one succeeds)", error);
        stats_.last_error = std::move(error);
      }
    } else if (!stats_.last_error.empty() && rc == SQLITE_OK) {
      spdlog::info("database checkpoints succeed again");
      stats_.last_error.clear();
    }
  }
}

}  // namespace vigil::storage
