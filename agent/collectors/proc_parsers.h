// Pure parsers for the /proc files the host collector reads. No I/O: tests feed canned text.
// Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vigil::agent {

// The aggregate "cpu" line of /proc/stat, in clock ticks.
struct CpuTimes {
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  uint64_t Busy() const { return user + nice + system + irq + softirq + steal; }
  uint64_t Total() const { return Busy() + idle + iowait; }
};
absl::StatusOr<CpuTimes> ParseProcStat(absl::string_view text);
// Busy share between two readings, in [0, 1]; 0 when no time passed.
double CpuUsageRatio(const CpuTimes& before, const CpuTimes& after);

struct MemInfo {
  uint64_t total_kb = 0;
  uint64_t available_kb = 0;
  double UsedRatio() const {
    return total_kb == 0 ? 0
                         : static_cast<double>(total_kb - std::min(available_kb, total_kb)) /
                               static_cast<double>(total_kb);
  }
};
// Uses MemAvailable; on kernels without it, MemFree + Buffers + Cached.
absl::StatusOr<MemInfo> ParseMeminfo(absl::string_view text);

absl::StatusOr<double> ParseLoadavg1(absl::string_view text);

struct MountEntry {
  std::string device;
  std::string mount_point;
  std::string fs_type;
};
// /proc/mounts (or /proc/self/mounts); octal escapes such as \040 are decoded.
std::vector<MountEntry> ParseMounts(absl::string_view text);
// True for filesystems that hold data on a device (ext4, xfs, btrfs, ...), false for
// pseudo filesystems (proc, sysfs, tmpfs, overlay's lower layers, cgroup, ...).
bool IsRealFilesystem(const MountEntry& mount);

// One /proc/<pid>/stat line. The command name may hold spaces and parentheses.
struct ProcStat {
  int pid = 0;
  std::string comm;
  char state = '?';
  uint64_t utime = 0, stime = 0;  // clock ticks
  uint64_t rss_pages = 0;
};
absl::StatusOr<ProcStat> ParseProcPidStat(absl::string_view text);

}  // namespace vigil::agent
