#include "agent/collectors/log_tailer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace vigil::agent {

LogTailer::LogTailer(std::string path, bool from_start, size_t max_line)
    : path_(std::move(path)), max_line_(max_line), first_open_(!from_start) {}

LogTailer::~LogTailer() { Close(); }

void LogTailer::Close() {
  if (fd_ >= 0) {
    close(fd_);
  }
  fd_ = -1;
}

absl::Status LogTailer::Open(bool at_end) {
  int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat(path_, ": ", std::strerror(errno)));
  }
  struct stat st;
  fstat(fd, &st);
  Close();
  fd_ = fd;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  offset_ = at_end ? st.st_size : 0;
  partial_.clear();
  skipping_ = false;
  return absl::OkStatus();
}

bool LogTailer::Drain(const std::function<void(absl::string_view)>& line, uint64_t& budget) {
  char buffer[64 * 1024];
  while (true) {
    if (budget == 0) {
      return false;
    }
    const size_t want = static_cast<size_t>(std::min<uint64_t>(sizeof(buffer), budget));
    ssize_t n = pread(fd_, buffer, want, offset_);
    if (n <= 0) {
      return true;
    }
    budget -= static_cast<uint64_t>(n);
    offset_ += n;
    absl::string_view chunk(buffer, static_cast<size_t>(n));
    while (!chunk.empty()) {
      const size_t nl = chunk.find('\n');
      if (nl == absl::string_view::npos) {
        if (!skipping_) {
          partial_.append(chunk.data(), chunk.size());
          if (partial_.size() > max_line_) {
            // Bounded memory: a runaway line is dropped and counted, the next one is read.
            partial_.clear();
            skipping_ = true;
            ++overlong_;
          }
        }
        break;
      }
      absl::string_view piece = chunk.substr(0, nl);
      chunk.remove_prefix(nl + 1);
      if (skipping_) {
        skipping_ = false;
        continue;
      }
      absl::string_view full = piece;
      if (!partial_.empty()) {
        partial_.append(piece.data(), piece.size());
        full = partial_;
      }
      if (!full.empty() && full.back() == '\r') {
        full.remove_suffix(1);
      }
      if (full.size() > max_line_) {
        ++overlong_;
      } else {
        line(full);
      }
      partial_.clear();
    }
  }
}

uint64_t LogTailer::BacklogBytes() const {
  struct stat st;
  if (fd_ < 0 || fstat(fd_, &st) != 0 || st.st_size <= offset_) {
    return 0;
  }
  return static_cast<uint64_t>(st.st_size - offset_);
}

absl::Status LogTailer::Poll(const std::function<void(absl::string_view)>& line,
                             uint64_t max_bytes) {
  uint64_t budget = max_bytes;
  if (fd_ < 0) {
    // The first open starts at the end (old lines are history); a file that appears later, or
    // reappears after rotation, is new and read from its start.
    absl::Status s = Open(first_open_);
    if (!s.ok()) {
      return s;
    }
    first_open_ = false;
  }
  struct stat st;
  if (fstat(fd_, &st) == 0 && st.st_size < offset_) {
    // copytruncate: the file was cut under us; everything in it now is new.
    offset_ = 0;
    partial_.clear();
  }
  if (!Drain(line, budget)) {
    return absl::OkStatus();  // the budget is spent: the rest, and any rotation, next time
  }
  struct stat by_name;
  if (stat(path_.c_str(), &by_name) != 0) {
    return absl::OkStatus();  // renamed away, new one not created yet: keep the old one open
  }
  if (by_name.st_dev != dev_ || by_name.st_ino != ino_) {
    // rename-and-create: the old file is finished (drained above); follow the new one from 0.
    if (!Drain(line, budget)) {
      return absl::OkStatus();
    }
    if (absl::Status s = Open(false); !s.ok()) {
      return s;
    }
    Drain(line, budget);
  }
  return absl::OkStatus();
}

}  // namespace vigil::agent
