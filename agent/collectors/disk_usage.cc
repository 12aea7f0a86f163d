#include "agent/collectors/disk_usage.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace vigil::agent {
namespace {

class Walk {
 public:
  Walk(const DiskUsageLimits& limits, dev_t dev)
      : limits_(limits), dev_(dev), deadline_(absl::Now() + limits.max_time) {}

  // Disk usage of the entry `name` in the open folder `parent_fd`; adds to `entries`.
  uint64_t Measure(int parent_fd, const char* name, int depth, uint64_t& entries,
                   bool* is_dir = nullptr) {
    if (Stop()) {
      return 0;
    }
    ++result_.visited;
    ++entries;
    struct stat st;
    if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      ++result_.unreadable;
      return 0;
    }
    if (is_dir != nullptr) {
      *is_dir = S_ISDIR(st.st_mode);
    }
    if (st.st_dev != dev_) {
      ++result_.other_filesystem;  // a mount point: like du -x, not this filesystem's usage
      return 0;
    }
    uint64_t bytes = static_cast<uint64_t>(st.st_blocks) * 512;
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1 && !linked_.insert({st.st_dev, st.st_ino}).second) {
      bytes = 0;  // a hard link to a file already counted
    }
    if (!S_ISDIR(st.st_mode)) {
      return bytes;
    }
    if (depth >= limits_.max_depth) {
      Cut(absl::StrCat("depth ", limits_.max_depth));
      return bytes;
    }
    const int fd =
        openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
    const int dir_fd =
        fd >= 0 ? fd : openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir_fd < 0) {
      ++result_.unreadable;
      return bytes;
    }
    bytes += Children(dir_fd, depth + 1, entries, nullptr);
    return bytes;
  }

  // Sums the children of the open folder `fd` (which it closes); lists them in `top` if given.
  uint64_t Children(int fd, int depth, uint64_t& entries, std::vector<DiskUsageEntry>* top) {
    DIR* dir = fdopendir(fd);
    if (dir == nullptr) {
      close(fd);
      ++result_.unreadable;
      return 0;
    }
    uint64_t bytes = 0;
    while (!Stop()) {
      errno = 0;
      dirent* e = readdir(dir);
      if (e == nullptr) {
        break;
      }
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) {
        continue;
      }
      uint64_t child_entries = 0;
      bool child_dir = false;
      const uint64_t child = Measure(dirfd(dir), e->d_name, depth, child_entries, &child_dir);
      bytes += child;
      entries += child_entries;
      if (top != nullptr) {
        top->push_back({e->d_name, child, child_entries, child_dir});
      }
    }
    closedir(dir);
    return bytes;
  }

  DiskUsage& result() { return result_; }

 private:
  bool Stop() {
    if (result_.cut) {
      return true;
    }
    if (result_.visited >= limits_.max_entries) {
      Cut(absl::StrCat(limits_.max_entries, " entries"));
    } else if ((result_.visited & 63) == 0 && absl::Now() >= deadline_) {
      Cut(absl::FormatDuration(limits_.max_time));
    }
    return result_.cut;
  }
  void Cut(std::string why) {
    if (!result_.cut) {
      result_.cut = true;
      result_.cut_why = std::move(why);
    }
  }

  const DiskUsageLimits& limits_;
  const dev_t dev_;
  const absl::Time deadline_;
  std::set<std::pair<dev_t, ino_t>> linked_;
  DiskUsage result_;
};

}  // namespace

absl::StatusOr<DiskUsage> MeasureDiskUsage(const std::string& dir, const DiskUsageLimits& limits) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat(dir, ": ", std::strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat(dir, ": ", std::strerror(errno)));
  }
  Walk walk(limits, st.st_dev);
  uint64_t entries = 0;
  std::vector<DiskUsageEntry> top;
  const uint64_t bytes = walk.Children(fd, 1, entries, &top);
  DiskUsage result = std::move(walk.result());
  result.total_bytes = bytes;
  std::stable_sort(top.begin(), top.end(), [](const DiskUsageEntry& a, const DiskUsageEntry& b) {
    return a.bytes > b.bytes;
  });
  result.entries = std::move(top);
  return result;
}

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"", "K", "M", "G", "T", "P", "E"};
  double v = static_cast<double>(bytes);
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  if (unit == 0) {
    return absl::StrCat(bytes);
  }
  return v < 10 ? absl::StrFormat("%.1f%s", v, kUnits[unit])
                : absl::StrFormat("%.0f%s", v, kUnits[unit]);
}

}  // namespace vigil::agent
