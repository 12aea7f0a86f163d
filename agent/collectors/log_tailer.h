// Follows a log file the way `tail -F` does, without losing or double-counting lines across
// logrotate's two modes: rename-and-create (the old file is drained to its end before the new
// one is opened) and copytruncate (a file shorter than our offset is read again from 0).
// Partial last lines wait until they end. Not thread-safe: one collector thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace vigil::agent {

class LogTailer {
 public:
  // from_start: read what is already in the file (tests); otherwise start at its end.
  LogTailer(std::string path, bool from_start = false, size_t max_line = size_t{64} * 1024);
  ~LogTailer();
  LogTailer(const LogTailer&) = delete;
  LogTailer& operator=(const LogTailer&) = delete;

  // Calls `line` for every complete line appended since the last call (without '\n' or '\r').
  // An error means the file is not readable now (it will be tried again next time).
  // At most `max_bytes` are read per call; the rest waits for the next call (a rotated file is
  // left only once it has been read to its end).
  absl::Status Poll(const std::function<void(absl::string_view)>& line,
                    uint64_t max_bytes = UINT64_MAX);

  // Bytes of the followed file not read yet (0 when none is open).
  uint64_t BacklogBytes() const;

  uint64_t overlong_lines() const { return overlong_; }

 private:
  absl::Status Open(bool at_end);
  // Reads until the end of the file or until `budget` is spent; true when the end was reached.
  bool Drain(const std::function<void(absl::string_view)>& line, uint64_t& budget);
  void Close();

  const std::string path_;
  const size_t max_line_;
  bool first_open_;
  int fd_ = -1;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  off_t offset_ = 0;
  std::string partial_;
  bool skipping_ = false;  // inside an overlong line: drop until its end
  uint64_t overlong_ = 0;
};

}  // namespace vigil::agent
