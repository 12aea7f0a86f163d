// The runbook's `du -sh /var/log/* | sort -hr | head`, in process and bounded: the entries of a
// folder with their disk usage (allocated blocks, like du), found by one walk that never follows
// a symlink, never leaves the folder's filesystem, counts a hard-linked file once, and stops at
// a number of entries visited or a deadline, whichever comes first, saying so. Stateless;
// thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace vigil::agent {

struct DiskUsageLimits {
  uint64_t max_entries = 100000;  // files and folders visited, over the whole walk
  absl::Duration max_time = absl::Seconds(2);
  int max_depth = 64;  // deeper folders are not entered (and the walk counts as cut)
};

struct DiskUsageEntry {
  std::string name;  // the child's name inside the folder
  uint64_t bytes = 0;
  uint64_t entries = 0;  // itself and everything counted under it
  bool directory = false;
};

struct DiskUsage {
  std::vector<DiskUsageEntry> entries;  // biggest first
  uint64_t total_bytes = 0;
  uint64_t visited = 0;
  bool cut = false;               // a bound stopped the walk: sizes are lower bounds
  std::string cut_why;            // "100000 entries", "2s", "depth 64"
  uint64_t unreadable = 0;        // folders or files that could not be opened or stat'ed
  uint64_t other_filesystem = 0;  // mount points skipped
};

// Walks `dir` (an absolute path, already prefixed with any mounts root). Errors only when `dir`
// itself cannot be opened; everything below it is counted or skipped. `deadline` is checked
// every few entries.
absl::StatusOr<DiskUsage> MeasureDiskUsage(const std::string& dir, const DiskUsageLimits& limits);

// 1536 -> "1.5K", like du -h (powers of 1024, one decimal below 10).
std::string HumanBytes(uint64_t bytes);

}  // namespace vigil::agent
