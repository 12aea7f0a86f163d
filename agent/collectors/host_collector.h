// Host telemetry from /proc and statvfs: CPU (from deltas), memory, disks, load, and the top
// processes by CPU and memory for diagnostics. Used by its collector thread only.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "agent/collector.h"
#include "agent/collectors/proc_parsers.h"

namespace vigil::agent {

struct HostCollectorOptions {
  std::string proc_root = "/proc";  // tests point this at a fixture tree
  int top_processes = 10;
};

class HostCollector final : public Collector {
 public:
  explicit HostCollector(HostCollectorOptions options);

  absl::string_view name() const override { return "host"; }
  void Collect(absl::Time now, Collection& out) override;
  std::vector<std::string> DiagnosticNames() const override;
  std::vector<v1::DiagnosticTable> Diagnose(absl::Time now,
                                            const std::vector<std::string>& names) override;

 private:
  struct ProcessSample {
    ProcStat stat;
    double cpu_ratio = 0;  // share of one core over the last interval
  };
  void ScanProcesses(absl::Time now);

  HostCollectorOptions options_;
  std::optional<CpuTimes> last_cpu_;
  std::map<int, uint64_t> last_proc_ticks_;  // pid -> utime+stime at the last scan
  absl::Time last_scan_ = absl::InfinitePast();
  std::vector<ProcessSample> processes_;  // from the last scan
  long page_size_ = 4096;
  long ticks_per_second_ = 100;
};

absl::StatusOr<std::unique_ptr<Collector>> NewHostCollector(const YAML::Node& config,
                                                            absl::string_view file);

}  // namespace vigil::agent
