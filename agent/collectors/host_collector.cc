#include "agent/collectors/host_collector.h"

#include <dirent.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "agent/collectors/utf8.h"
#include "common/yaml_util.h"

namespace vigil::agent {
namespace {

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

HostCollector::HostCollector(HostCollectorOptions options) : options_(std::move(options)) {
  page_size_ = sysconf(_SC_PAGESIZE);
  ticks_per_second_ = sysconf(_SC_CLK_TCK);
  // A baseline now, so the very first round already has a CPU delta.
  if (auto text = ReadFile(options_.proc_root + "/stat")) {
    if (auto cpu = ParseProcStat(*text); cpu.ok()) {
      last_cpu_ = *cpu;
    }
  }
}

void HostCollector::Collect(absl::Time now, Collection& out) {
  bool ok = true;
  if (auto text = ReadFile(options_.proc_root + "/stat")) {
    if (auto cpu = ParseProcStat(*text); cpu.ok()) {
      if (last_cpu_) {
        out.Gauge("host_cpu_usage_ratio", CpuUsageRatio(*last_cpu_, *cpu));
      }
      last_cpu_ = *cpu;
      if (last_round_ != absl::InfinitePast()) {
        round_step_ = now - last_round_;
      }
      last_round_ = now;
      KeepCpuReading(now, *cpu);
    } else {
      ok = false;
    }
  } else {
    ok = false;
  }
  if (!ReadMemory(out, /*with_swap=*/true)) {
    ok = false;
  }
  ReadLoad(out);
  const std::string mount_table =
      options_.proc_root + (options_.mounts_root.empty() ? "/self/mounts" : "/1/mounts");
  if (auto text = ReadFile(mount_table)) {
    std::set<std::string> seen_devices;  // bind mounts of one device count once
    disk_mounts_.clear();
    for (const MountEntry& m : ParseMounts(*text)) {
      if (!IsRealFilesystem(m) || !seen_devices.insert(m.device).second) {
        continue;
      }
      if (ReadDisk(m.mount_point, out)) {
        disk_mounts_.push_back(m.mount_point);
      }
    }
  }
  ScanProcesses(now);
  out.Gauge("host_up", ok ? 1 : 0);
}

bool HostCollector::ReadMemory(Collection& out, bool with_swap) {
  auto text = ReadFile(options_.proc_root + "/meminfo");
  if (!text) {
    return false;
  }
  auto mem = ParseMeminfo(*text);
  if (!mem.ok()) {
    return false;
  }
  out.Gauge("host_memory_used_ratio", mem->UsedRatio());
  if (with_swap) {
    out.Gauge("host_swap_used_ratio", mem->SwapUsedRatio());
  }
  return true;
}

void HostCollector::ReadLoad(Collection& out) {
  if (auto text = ReadFile(options_.proc_root + "/loadavg")) {
    if (auto load = ParseLoadavg1(*text); load.ok()) {
      out.Gauge("host_load1", *load);
    }
  }
}

bool HostCollector::ReadDisk(const std::string& mount, Collection& out) {
  struct statvfs vfs;
  const std::string path = options_.mounts_root + mount;
  if (statvfs(path.c_str(), &vfs) != 0 || vfs.f_blocks == 0) {
    return false;
  }
  // Like df: used / (used + available to unprivileged users).
  double used = static_cast<double>(vfs.f_blocks - vfs.f_bfree);
  double avail = static_cast<double>(vfs.f_bavail);
  if (used + avail <= 0) {
    return false;
  }
  out.Gauge("host_disk_used_ratio", used / (used + avail), {{"mount", mount}});
  return true;
}

void HostCollector::KeepCpuReading(absl::Time now, const CpuTimes& cpu) {
  cpu_readings_.emplace_back(now, cpu);
  while (!cpu_readings_.empty() &&
         (cpu_readings_.size() > 256 || cpu_readings_.front().first < now - 2 * round_step_)) {
    cpu_readings_.pop_front();
  }
}

void HostCollector::Sense(absl::Time now, const std::vector<std::string>& names, Collection& out) {
  for (const std::string& name : names) {
    if (name == "host_cpu_usage_ratio") {
      auto text = ReadFile(options_.proc_root + "/stat");
      absl::StatusOr<CpuTimes> cpu =
          text ? ParseProcStat(*text) : absl::StatusOr<CpuTimes>(absl::NotFoundError("stat"));
      if (!cpu.ok() || round_step_ <= absl::ZeroDuration()) {
        continue;  // no reading, or no round step known yet
      }
      // The newest reading at least one round step old: the same span a round measures.
      for (auto it = cpu_readings_.rbegin(); it != cpu_readings_.rend(); ++it) {
        if (it->first <= now - round_step_) {
          out.Gauge("host_cpu_usage_ratio", CpuUsageRatio(it->second, *cpu));
          break;
        }
      }
      KeepCpuReading(now, *cpu);
    } else if (name == "host_memory_used_ratio") {
      ReadMemory(out, /*with_swap=*/false);  // only what was asked for
    } else if (name == "host_load1") {
      ReadLoad(out);
    } else if (name == "host_disk_used_ratio") {
      for (const std::string& mount : disk_mounts_) {
        ReadDisk(mount, out);
      }
    }
  }
}

void HostCollector::ScanProcesses(absl::Time now) {
  DIR* dir = opendir(options_.proc_root.c_str());
  if (dir == nullptr) {
    return;
  }
  double elapsed = last_scan_ == absl::InfinitePast() ? 0 : absl::ToDoubleSeconds(now - last_scan_);
  std::map<int, uint64_t> ticks;
  std::vector<ProcessSample> samples;
  while (dirent* e = readdir(dir)) {
    int pid;
    if (!absl::SimpleAtoi(e->d_name, &pid)) {
      continue;
    }
    auto text = ReadFile(absl::StrCat(options_.proc_root, "/", e->d_name, "/stat"));
    if (!text) {
      continue;  // the process exited between readdir and open
    }
    auto st = ParseProcPidStat(*text);
    if (!st.ok()) {
      continue;
    }
    uint64_t total = st->utime + st->stime;
    ticks[pid] = total;
    ProcessSample s{*st, 0};
    auto prev = last_proc_ticks_.find(pid);
    if (elapsed > 0 && prev != last_proc_ticks_.end() && total >= prev->second) {
      s.cpu_ratio = static_cast<double>(total - prev->second) /
                    static_cast<double>(ticks_per_second_) / elapsed;
    }
    samples.push_back(std::move(s));
  }
  closedir(dir);
  last_proc_ticks_ = std::move(ticks);
  last_scan_ = now;
  processes_ = std::move(samples);
}

std::vector<std::string> HostCollector::DiagnosticNames() const {
  std::vector<std::string> names = {"top_processes_cpu", "top_processes_memory", "meminfo"};
  if (!options_.disk_usage_dirs.empty()) {
    names.push_back("disk_usage_top");
  }
  return names;
}

std::string HostCollector::UnitOf(int pid) const {
  switch (options_.unit_source) {
    case HostCollectorOptions::UnitSource::kSystemd:
      if (auto text = ReadFile(absl::StrCat(options_.proc_root, "/", pid, "/cgroup"))) {
        return SystemdUnitFromCgroup(text->substr(0, 64 * 1024));
      }
      return "";
    case HostCollectorOptions::UnitSource::kSupervisor:
      if (auto text = ReadFile(absl::StrCat(options_.proc_root, "/", pid, "/environ"))) {
        return SupervisorProgramFromEnviron(text->substr(0, 256 * 1024));
      }
      return "";
    case HostCollectorOptions::UnitSource::kNone:
      return "";
  }
  return "";
}

v1::DiagnosticTable HostCollector::MeminfoTable(absl::Time now) const {
  v1::DiagnosticTable t;
  t.set_name("meminfo");
  t.set_collected_unix_ms(absl::ToUnixMillis(now));
  for (const char* c : {"field", "value", "unit", "human"}) {
    t.add_columns(c);
  }
  auto text = ReadFile(options_.proc_root + "/meminfo");
  if (!text) {
    t.set_error(absl::StrCat(options_.proc_root, "/meminfo: not readable"));
    return t;
  }
  for (const MeminfoField& f : ParseMeminfoFields(*text)) {
    auto* row = t.add_rows();
    row->add_cells(f.name);
    row->add_cells(absl::StrCat(f.value));
    row->add_cells(f.kb ? "kB" : "");
    row->add_cells(f.kb ? HumanBytes(f.value * 1024) : absl::StrCat(f.value));
  }
  if (t.rows_size() == 0) {
    t.set_error(absl::StrCat(options_.proc_root, "/meminfo: no field parsed"));
  }
  return t;
}

v1::DiagnosticTable HostCollector::DiskUsageTable(absl::Time now) const {
  v1::DiagnosticTable t;
  t.set_name("disk_usage_top");
  t.set_collected_unix_ms(absl::ToUnixMillis(now));
  for (const char* c : {"path", "bytes", "human", "entries", "note"}) {
    t.add_columns(c);
  }
  std::vector<std::string> errors;
  for (const std::string& dir : options_.disk_usage_dirs) {
    absl::StatusOr<DiskUsage> usage =
        MeasureDiskUsage(options_.mounts_root + dir, options_.disk_usage_limits);
    if (!usage.ok()) {
      errors.push_back(absl::StrCat(dir, ": ", usage.status().message()));
      continue;
    }
    const std::string prefix = dir == "/" ? "/" : dir + "/";
    for (size_t i = 0; i < usage->entries.size() && i < static_cast<size_t>(options_.disk_usage_top);
         ++i) {
      const DiskUsageEntry& e = usage->entries[i];
      auto* row = t.add_rows();
      row->add_cells(ValidUtf8(absl::StrCat(prefix, e.name, e.directory ? "/" : "")));
      row->add_cells(absl::StrCat(e.bytes));
      row->add_cells(HumanBytes(e.bytes));
      row->add_cells(absl::StrCat(e.entries));
      row->add_cells("");
    }
    // One summary row per folder: its total, and whether the bound cut the walk short.
    auto* total = t.add_rows();
    total->add_cells(ValidUtf8(dir));
    total->add_cells(absl::StrCat(usage->total_bytes));
    total->add_cells(HumanBytes(usage->total_bytes));
    total->add_cells(absl::StrCat(usage->visited));
    std::string note = "total";
    if (usage->cut) {
      absl::StrAppend(&note, "; walk cut short at ", usage->cut_why,
                      ": sizes are lower bounds");
    }
    if (usage->unreadable > 0) {
      absl::StrAppend(&note, "; ", usage->unreadable, " unreadable");
    }
    if (usage->other_filesystem > 0) {
      absl::StrAppend(&note, "; ", usage->other_filesystem, " mount point(s) not entered");
    }
    total->add_cells(note);
  }
  if (!errors.empty()) {
    t.set_error(absl::StrJoin(errors, "; "));
  }
  return t;
}

std::vector<v1::DiagnosticTable> HostCollector::Diagnose(absl::Time now,
                                                         const std::vector<std::string>& names) {
  std::vector<v1::DiagnosticTable> tables;
  auto make = [&](absl::string_view name, auto less) {
    std::vector<ProcessSample> sorted = processes_;
    std::sort(sorted.begin(), sorted.end(), less);
    v1::DiagnosticTable t;
    t.set_name(std::string(name));
    t.set_collected_unix_ms(absl::ToUnixMillis(now));
    for (const char* c : {"pid", "command", "state", "cpu_percent", "rss_mb", "unit"}) {
      t.add_columns(c);
    }
    for (size_t i = 0; i < sorted.size() && i < static_cast<size_t>(options_.top_processes); ++i) {
      const ProcessSample& p = sorted[i];
      auto* row = t.add_rows();
      row->add_cells(absl::StrCat(p.stat.pid));
      row->add_cells(ValidUtf8(p.stat.comm));
      row->add_cells(std::string(1, p.stat.state));
      row->add_cells(absl::StrFormat("%.1f", p.cpu_ratio * 100));
      row->add_cells(absl::StrFormat(
          "%.1f", static_cast<double>(p.stat.rss_pages * page_size_) / (1024.0 * 1024.0)));
      row->add_cells(UnitOf(p.stat.pid));  // read now: only the listed processes pay for it
    }
    tables.push_back(std::move(t));
  };
  for (const std::string& n : names) {
    if (n == "top_processes_cpu") {
      make(n, [](const ProcessSample& a, const ProcessSample& b) {
        return a.cpu_ratio > b.cpu_ratio;
      });
    } else if (n == "top_processes_memory") {
      make(n, [](const ProcessSample& a, const ProcessSample& b) {
        return a.stat.rss_pages > b.stat.rss_pages;
      });
    } else if (n == "meminfo") {
      tables.push_back(MeminfoTable(now));
    } else if (n == "disk_usage_top" && !options_.disk_usage_dirs.empty()) {
      tables.push_back(DiskUsageTable(now));
    }
  }
  return tables;
}

absl::StatusOr<std::unique_ptr<Collector>> NewHostCollector(const YAML::Node& config,
                                                            absl::string_view file) {
  HostCollectorOptions options;
  if (absl::Status s = YamlCheckKeys(config, file, "collectors.host",
                                     {"proc_root", "mounts_root", "top_processes", "unit_source",
                                      "disk_usage_dirs", "disk_usage_top",
                                      "disk_usage_max_entries", "disk_usage_max_time"});
      !s.ok()) {
    return s;
  }
  auto root = YamlString(config, "proc_root", file, false, options.proc_root);
  if (!root.ok()) {
    return root.status();
  }
  options.proc_root = *root;
  auto mounts_root = YamlString(config, "mounts_root", file, false, "");
  if (!mounts_root.ok()) {
    return mounts_root.status();
  }
  // "/" and "" both mean the agent's own view; a trailing '/' would double the mount's own.
  options.mounts_root = std::string(absl::StripSuffix(*mounts_root, "/"));
  for (const auto& [key, value] :
       {std::pair<const char*, const std::string*>{"proc_root", &options.proc_root},
        {"mounts_root", &*mounts_root}}) {
    if (!value->empty() && value->front() != '/') {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, config[key]),
                                                     ": collectors.host.", key, " '", *value,
                                                     "' must be an absolute path"));
    }
  }
  auto top = YamlInt(config, "top_processes", file, options.top_processes, 0, 1000);
  if (!top.ok()) {
    return top.status();
  }
  if (!(*top >= 0 && *top <= 1000)) {  // also refuses .nan, before the conversion to int
    return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, config["top_processes"]),
                                                   ": collectors.host.top_processes must be 0 to "
                                                   "1000"));
  }
  options.top_processes = static_cast<int>(*top);
  auto source = YamlString(config, "unit_source", file, false, "systemd");
  if (!source.ok()) {
    return source.status();
  }
  if (*source == "systemd") {
    options.unit_source = HostCollectorOptions::UnitSource::kSystemd;
  } else if (*source == "supervisor") {
    options.unit_source = HostCollectorOptions::UnitSource::kSupervisor;
  } else if (*source == "none") {
    options.unit_source = HostCollectorOptions::UnitSource::kNone;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, config["unit_source"]), ": collectors.host.unit_source '",
                     *source, "' must be systemd, supervisor or none"));
  }
  auto dirs = YamlStringList(config, "disk_usage_dirs", file);
  if (!dirs.ok()) {
    return dirs.status();
  }
  // At most 8 folders x (100 entries + a total row): within the controller's 1,000 rows a table.
  if (dirs->size() > 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        YamlWhere(file, config["disk_usage_dirs"]), ": collectors.host.disk_usage_dirs: at most 8"));
  }
  for (const std::string& d : *dirs) {
    if (d.empty() || d.front() != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          YamlWhere(file, config["disk_usage_dirs"]), ": collectors.host.disk_usage_dirs: '", d,
          "' must be an absolute path"));
    }
  }
  options.disk_usage_dirs = std::move(*dirs);
  auto du_top = YamlInt(config, "disk_usage_top", file, options.disk_usage_top, 1, 100);
  if (!du_top.ok()) {
    return du_top.status();
  }
  options.disk_usage_top = static_cast<int>(*du_top);
  auto du_entries =
      YamlInt(config, "disk_usage_max_entries", file,
              static_cast<int64_t>(options.disk_usage_limits.max_entries), 1, 10'000'000);
  if (!du_entries.ok()) {
    return du_entries.status();
  }
  options.disk_usage_limits.max_entries = static_cast<uint64_t>(*du_entries);
  auto du_time = YamlDuration(config, "disk_usage_max_time", file,
                              options.disk_usage_limits.max_time);
  if (!du_time.ok()) {
    return du_time.status();
  }
  if (*du_time < absl::Milliseconds(10) || *du_time > absl::Seconds(60)) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, config["disk_usage_max_time"]),
                     ": collectors.host.disk_usage_max_time must be 10ms to 60s"));
  }
  options.disk_usage_limits.max_time = *du_time;
  return std::make_unique<HostCollector>(std::move(options));
}

}  // namespace vigil::agent
