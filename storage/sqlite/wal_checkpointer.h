// WalCheckpointer: copies a WAL database's log into the database file on a thread and a
// connection of its own, so the writer's commits do not wait for it. SQLite's own
// auto-checkpoint runs inside whichever commit crosses 1,000 pages: 14 % of the writer's CPU in
// store_append_bench, plus the database file's fsync, on the one thread every timeline write
// waits for.
//
// The log must still shrink: SQLite starts it over only when a write transaction begins after a
// checkpoint has caught up with it. So a writer that finds the log at `stall_bytes` or more waits
// (BeforeWrite) for the pass that its last commit asked for; below that, passes overlap its work.
// A pass that cannot finish (a reader still on an old snapshot, a full disk) ends all the same,
// and the writer goes on: the log grows, as it would under SQLite's own checkpointing.
//
// Thread-safe. The writer connection's wal hook is this object's while it lives; OnCommit runs on
// the writer's thread (inside its commit) and BeforeWrite must too.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace vigil::storage {

class WalCheckpointer {
 public:
  struct Options {
    // A pass starts once this much was logged since the last one was asked for (SQLite's own
    // threshold is 1,000 pages: 4 MiB of 4 KiB pages).
    int64_t start_bytes = 4 << 20;
    // With this much in the log the writer waits for a pass before its next transaction (a few
    // of the timeline writer's largest batches). A longer log makes every page lookup slower.
    int64_t stall_bytes = 32 << 20;
  };
  struct Stats {
    uint64_t passes = 0;
    uint64_t failed_passes = 0;  // errors other than another checkpoint being under way
    uint64_t writer_stalls = 0;
    int last_log_frames = 0;  // the log's size after the writer's last commit, in pages
    int64_t page_size = 0;
    std::string last_error;
  };

  // Opens its own connection to `path` and becomes `writer`'s wal hook (which turns SQLite's
  // auto-checkpoint off for that connection).
  static absl::StatusOr<std::unique_ptr<WalCheckpointer>> Start(sqlite3* writer,
                                                                const std::string& path,
                                                                Options options);
  // Gives the writer back SQLite's own auto-checkpoint, ends the thread after its pass, closes
  // its connection.
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // The writer calls this before each write transaction.
  void BeforeWrite();
  Stats stats() const;

 private:
  WalCheckpointer(sqlite3* writer, sqlite3* own, Options options, int64_t page_size);
  static int OnCommit(void* self, sqlite3* db, const char* schema, int frames);
  void Loop();

  sqlite3* const writer_;
  sqlite3* const own_;
  // The options in pages of this database.
  const int start_frames_;
  const int stall_frames_;
  mutable absl::Mutex mu_;
  uint64_t asked_ ABSL_GUARDED_BY(mu_) = 0;  // passes asked for
  int frames_when_asked_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t done_ ABSL_GUARDED_BY(mu_) = 0;  // asked-for passes that a finished pass covered
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace vigil::storage
