// WalCheckpointer: copies a WAL database's log back into the database file on its own thread and
// connection, so that the writer's commits never wait for a checkpoint. SQLite's default runs a
// checkpoint inside the commit that crosses 1,000 log pages: at 4,096 events a batch that was
// an eighth of the timeline writer's time (measured with perf on bench/store_append_bench).
//
// The writer's connection reports each commit (sqlite3_wal_hook); past `start_pages` the
// checkpointer wakes and runs a PASSIVE checkpoint, which never blocks the writer or a reader.
// Should it fall behind (a slow disk, a reader holding an old snapshot) and the log pass
// `writer_pages`, the committing thread checkpoints itself, as SQLite's default would: the log
// stays bounded either way. A failed checkpoint loses nothing (the pages stay in the log) and is
// tried again at the next commit past the threshold.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"

namespace vigil::storage {

class WalCheckpointer {
 public:
  struct Options {
    int start_pages = 1'000;    // SQLite's own autocheckpoint threshold
    // About 16 MiB of 4 KiB pages: the writer helps beyond this. Commits back to back never
    // give a background checkpoint the moment to reach the log's end, so without this the log
    // would never start over; the writer's checkpoint then has only the last pages to copy.
    int writer_pages = 4'000;
  };
  struct Stats {
    uint64_t checkpoints = 0;         // by the checkpointer's thread
    uint64_t writer_checkpoints = 0;  // by the committing thread, past writer_pages
    uint64_t failures = 0;
    int log_pages = 0;  // in the log after the last commit
  };

  // Opens its own connection to `path` (an existing WAL database) and starts its thread.
  static absl::StatusOr<std::unique_ptr<WalCheckpointer>> Start(std::string path,
                                                                Options options);
  static absl::StatusOr<std::unique_ptr<WalCheckpointer>> Start(std::string path) {
    return Start(std::move(path), Options{});
  }
  // Stops the thread (after a checkpoint under way) and closes its connection.
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // Takes over `writer`'s checkpoints: turns its autocheckpoint off and installs the commit
  // hook. Call once, before the writer commits; `writer` must outlive this object or be
  // detached with Detach() first.
  void Attach(sqlite3* writer);
  void Detach(sqlite3* writer);

  // Runs sqlite3_wal_checkpoint_v2(db, mode) once the background checkpoint under way, if any,
  // has finished, and holds the next off until it returns: two checkpoints at once would make
  // one fail with SQLITE_BUSY. For the writer's own (TRUNCATE to give a full disk its space
  // back). Returns SQLite's result code.
  int CheckpointNow(sqlite3* db, int mode, int* logged, int* copied);

  Stats stats() const;

 private:
  WalCheckpointer(std::string path, Options options, sqlite3* db);
  static int OnCommit(void* self, sqlite3* writer, const char* schema, int pages);
  void Loop();

  const std::string path_;
  const Options options_;
  sqlite3* const db_;  // the checkpointer's own connection, used only by its thread
  mutable absl::Mutex mu_;
  bool wanted_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool running_ ABSL_GUARDED_BY(mu_) = false;  // the background thread is checkpointing
  bool held_ ABSL_GUARDED_BY(mu_) = false;     // a CheckpointNow is under way
  Stats stats_ ABSL_GUARDED_BY(mu_);
  RateLimitedLog failure_log_{5, absl::Minutes(1)};
  std::thread thread_;
};

}  // namespace vigil::storage
