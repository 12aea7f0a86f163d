// Pure parsers for the /proc files the host collector reads. No I/O: tests feed canned text.
// Stateless; thread-safe.
#pragma once

#include <algorithm>
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
  uint64_t swap_total_kb = 0;
  uint64_t swap_free_kb = 0;
  // (SwapTotal - SwapFree) / SwapTotal; 0 without swap.
  double SwapUsedRatio() const {
    return swap_total_kb == 0
               ? 0
               : static_cast<double>(swap_total_kb - std::min(swap_free_kb, swap_total_kb)) /
                     static_cast<double>(swap_total_kb);
  }
  double UsedRatio() const {
    return total_kb == 0 ? 0
                         : static_cast<double>(total_kb - std::min(available_kb, total_kb)) /
                               static_cast<double>(total_kb);
  }
};
// Uses MemAvailable; on kernels without it, MemFree + Buffers + Cached.
absl::StatusOr<MemInfo> ParseMeminfo(absl::string_view text);

// Every "Name: value [kB]" line of /proc/meminfo in file order (the `cat /proc/meminfo` of the
// runbook), at most kMaxMeminfoFields; lines that do not parse are skipped.
struct MeminfoField {
  std::string name;
  uint64_t value = 0;
  bool kb = false;  // "kB" unit; false for counts such as HugePages_Total
};
inline constexpr size_t kMaxMeminfoFields = 256;
std::vector<MeminfoField> ParseMeminfoFields(absl::string_view text);

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

// The systemd system unit a process belongs to, from /proc/<pid>/cgroup (cgroup v2 "0::/path",
// or v1 lines, where the name=systemd hierarchy wins): the innermost "*.service" component of
// the path, so a unit's own sub-cgroups (".../app.service/worker") and template instances
// ("system-app.slice/app@1.service") map to the unit. Empty for what `systemctl restart` cannot
// take: the root, scopes (sessions, containers, init.scope), slices alone, user managers'
// units (anything under user@UID.service), kubepods.
std::string SystemdUnitFromCgroup(absl::string_view text);

// The supervisor program a process runs under, from /proc/<pid>/environ (NUL-separated):
// supervisord sets SUPERVISOR_PROCESS_NAME and SUPERVISOR_GROUP_NAME in its children, whose own
// children inherit them. "name" when the group is the program's own, "group:name" otherwise
// (what supervisorctl restart takes); empty when the variables are absent or not printable.
std::string SupervisorProgramFromEnviron(absl::string_view environ);

}  // namespace vigil::agent
