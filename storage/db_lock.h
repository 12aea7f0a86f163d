// One server per database: an advisory lock (flock) on DB.lock, held for as long as the
// controller runs, with the holder's pid written inside so a refusal can name it. Short-lived
// readers (`vigil-controller users ...`, sqlite3) do not take it and still work beside the server.
// The kernel drops the lock when the process dies, so a crash never leaves it stale.
// Not thread-safe; one owner.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace vigil::storage {

class DatabaseLock {
 public:
  // Takes the lock on `db_path` + ".lock" (created 0600). FailedPrecondition naming the database
  // and the holder's pid when another process holds it; the error of open otherwise.
  static absl::StatusOr<std::unique_ptr<DatabaseLock>> Acquire(const std::string& db_path);
  ~DatabaseLock();
  DatabaseLock(const DatabaseLock&) = delete;
  DatabaseLock& operator=(const DatabaseLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  DatabaseLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

}  // namespace vigil::storage
