// Host telemetry from /proc and statvfs: CPU (from deltas), memory, disks, load, and the top
// processes by CPU and memory for diagnostics. In a container (a Kubernetes DaemonSet) it reads
// the node through the host's /proc and / mounted under roots of its own. Used by its collector
// thread only.
#pragma once

#include <sys/types.h>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "agent/collector.h"
#include "agent/collectors/disk_usage.h"
#include "agent/collectors/proc_parsers.h"

namespace vigil::agent {

struct HostCollectorOptions {
  std::string proc_root = "/proc";  // the host's /proc, e.g. /host/proc in a container
  // Empty: the disks are the mounts the agent itself sees. Set (e.g. /host/root, the host's /
  // mounted there): the disks are the host's mounts, read from proc_root/1/mounts (the host's
  // init, as the host's /proc shows it from any PID namespace), each measured at mounts_root + its mount point and
  // labelled with the host's mount point.
  std::string mounts_root;
  int top_processes = 10;
  // What the top_processes tables' `unit` column names, for restart_service: the systemd unit
  // from /proc/PID/cgroup (kSystemd), the supervisor program from the SUPERVISOR_* variables
  // supervisord puts in its children's /proc/PID/environ (kSupervisor; readable by root or the
  // process's owner, else empty), or nothing (kNone).
  enum class UnitSource { kSystemd, kSupervisor, kNone };
  UnitSource unit_source = UnitSource::kSystemd;
  // disk_usage_top: the folders whose entries are measured (the host's paths; read under
  // mounts_root), how many of the biggest are listed per folder, and the walk's bounds.
  std::vector<std::string> disk_usage_dirs;
  int disk_usage_top = 10;
  DiskUsageLimits disk_usage_limits;
};

class HostCollector final : public Collector {
 public:
  explicit HostCollector(HostCollectorOptions options);

  absl::string_view name() const override { return "host"; }
  void Collect(absl::Time now, Collection& out) override;
  // Memory (/proc/meminfo), load (/proc/loadavg), the disks the last round found (statvfs), and
  // CPU (/proc/stat) as the busy share over the trailing round step (one interval ending now,
  // to within one check), so it measures what a round measures, only at another phase.
  std::vector<std::string> SensedGauges() const override {
    return {"host_cpu_usage_ratio", "host_memory_used_ratio", "host_load1",
            "host_disk_used_ratio"};
  }
  void Sense(absl::Time now, const std::vector<std::string>& names, Collection& out) override;
  std::vector<std::string> DiagnosticNames() const override;
  std::vector<v1::DiagnosticTable> Diagnose(absl::Time now,
                                            const std::vector<std::string>& names) override;

 private:
  struct ProcessSample {
    ProcStat stat;
    double cpu_ratio = 0;  // share of one core over the last interval
  };
  void ScanProcesses(absl::Time now);
  // Each appends its gauge(s); false when the source could not be read.
  bool ReadMemory(Collection& out, bool with_swap);
  void ReadLoad(Collection& out);
  bool ReadDisk(const std::string& mount, Collection& out);
  // The unit column for `pid` (see HostCollectorOptions::unit_source); "" when unknown.
  std::string UnitOf(int pid) const;
  v1::DiagnosticTable MeminfoTable(absl::Time now) const;
  v1::DiagnosticTable DiskUsageTable(absl::Time now) const;

  HostCollectorOptions options_;
  std::optional<CpuTimes> last_cpu_;
  std::map<int, uint64_t> last_proc_ticks_;  // pid -> utime+stime at the last scan
  absl::Time last_scan_ = absl::InfinitePast();
  std::vector<ProcessSample> processes_;  // from the last scan
  std::vector<std::string> disk_mounts_;  // the mounts the last round measured
  // /proc/stat readings of the rounds and checks within two round steps, oldest first.
  void KeepCpuReading(absl::Time now, const CpuTimes& cpu);
  std::deque<std::pair<absl::Time, CpuTimes>> cpu_readings_;
  absl::Time last_round_ = absl::InfinitePast();
  absl::Duration round_step_ = absl::ZeroDuration();
  long page_size_ = 4096;
  long ticks_per_second_ = 100;
};

absl::StatusOr<std::unique_ptr<Collector>> NewHostCollector(const YAML::Node& config,
                                                            absl::string_view file);

}  // namespace vigil::agent
