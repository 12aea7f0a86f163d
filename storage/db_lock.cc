#include "storage/db_lock.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace vigil::storage {

absl::StatusOr<std::unique_ptr<DatabaseLock>> DatabaseLock::Acquire(const std::string& db_path) {
  const std::string path = absl::StrCat(db_path, ".lock");
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot open the database lock ", path, ": ", std::strerror(errno)));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    char holder[32] = {};
    const ssize_t n = pread(fd, holder, sizeof(holder) - 1, 0);
    close(fd);
    if (error != EWOULDBLOCK) {
      return absl::UnavailableError(absl::StrCat("cannot lock ", path, ": ", std::strerror(error)));
    }
    const std::string pid(absl::StripAsciiWhitespace(std::string(holder, n > 0 ? n : 0)));
    return absl::FailedPreconditionError(
        absl::StrCat("database ", db_path, " is in use by another vigil-controller",
                     pid.empty() ? "" : absl::StrCat(" (pid ", pid, ")"), ", which holds ", path,
                     "; one server per database"));
  }
  const std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) != 0 ||
      pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    // The pid only names the holder in a refusal: the lock is held either way.
    spdlog::warn("cannot write this process's pid into {}: {}", path, std::strerror(errno));
  }
  return std::unique_ptr<DatabaseLock>(new DatabaseLock(path, fd));
}

DatabaseLock::~DatabaseLock() { close(fd_); }

}  // namespace vigil::storage
