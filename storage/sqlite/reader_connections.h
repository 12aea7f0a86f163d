// ReaderConnections: read-only SQLite connections to one WAL database, lent out one per read so
// that concurrent readers never wait on each other (under WAL each reads its own snapshot while
// the writer appends). Connections are opened on first need, up to a cap; a reader beyond the
// cap waits for one to come back, or gets UNAVAILABLE after a bounded wait. Thread-safe; a
// Lease (and the connection it holds) belongs to one thread at a time.
#pragma once

#include <sqlite3.h>

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace vigil::storage {

class ReaderConnections {
 public:
  // One connection lent to one reader; given back when destroyed. Statements prepared on it must
  // be finalized first (declare them after the lease). A read transaction left open is rolled
  // back on return, so the next reader never inherits an old snapshot.
  class Lease {
   public:
    Lease(Lease&& other) noexcept : owner_(other.owner_), db_(other.db_) {
      other.owner_ = nullptr;
      other.db_ = nullptr;
    }
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    ~Lease();
    sqlite3* db() const { return db_; }

   private:
    friend class ReaderConnections;
    Lease(ReaderConnections* owner, sqlite3* db) : owner_(owner), db_(db) {}
    ReaderConnections* owner_;
    sqlite3* db_;
  };

  struct Options {
    int max_connections = 8;                    // at least 1
    absl::Duration wait = absl::Seconds(10);    // longest wait for a free connection
  };

  // Opens nothing yet; `path` must name an existing database (the writer creates it).
  ReaderConnections(std::string path, Options options);
  // Closes every connection; no lease may be out.
  ~ReaderConnections();
  ReaderConnections(const ReaderConnections&) = delete;
  ReaderConnections& operator=(const ReaderConnections&) = delete;

  // A free connection, a new one while under the cap, or the first to come back. UNAVAILABLE
  // naming the path when none can be opened or none comes back within the wait.
  absl::StatusOr<Lease> Acquire();

  // Connections opened so far (idle or lent).
  int opened() const;

 private:
  void Return(sqlite3* db);
  absl::StatusOr<sqlite3*> Connect() const;

  const std::string path_;
  const Options options_;
  mutable absl::Mutex mu_;
  std::vector<sqlite3*> idle_ ABSL_GUARDED_BY(mu_);
  int opened_ ABSL_GUARDED_BY(mu_) = 0;
  int opening_ ABSL_GUARDED_BY(mu_) = 0;  // being opened outside the lock
};

}  // namespace vigil::storage
