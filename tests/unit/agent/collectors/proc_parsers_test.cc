// /proc parsing against fixture files copied from real kernels, plus odd and broken ones.
#include "agent/collectors/proc_parsers.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "agent/collectors/host_collector.h"
#include "tests/support/process.h"

namespace vigil::agent {
namespace {

std::string FixtureDir() {
  const char* dir = std::getenv("VIGIL_SOURCE_DIR");
  return std::string(dir != nullptr ? dir : VIGIL_TEST_SOURCE_DIR) + "/tests/unit/agent/fixtures/";
}

std::string Fixture(const std::string& name) {
  const std::string path = FixtureDir() + name;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(ProcStat, ParsesAggregateCpuLine) {
  auto cpu = ParseProcStat(Fixture("proc/stat"));
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ(cpu->user, 10132153u);
  EXPECT_EQ(cpu->idle, 46828483u);
  EXPECT_EQ(cpu->softirq, 25195u);
  EXPECT_EQ(cpu->Busy(), 10132153u + 290696u + 3084719u + 25195u);
}

TEST(ProcStat, CpuUsageFromDeltas) {
  CpuTimes before{.user = 100, .idle = 900};
  CpuTimes after{.user = 160, .system = 15, .idle = 1000, .iowait = 25};
  // busy +75, total +200
  EXPECT_DOUBLE_EQ(CpuUsageRatio(before, after), 75.0 / 200.0);
  EXPECT_DOUBLE_EQ(CpuUsageRatio(after, after), 0.0);
}

TEST(ProcStat, RefusesMissingOrShortCpuLine) {
  EXPECT_FALSE(ParseProcStat(Fixture("odd/stat_no_cpu")).ok());
  EXPECT_FALSE(ParseProcStat(Fixture("odd/stat_short_cpu")).ok());
  EXPECT_FALSE(ParseProcStat("").ok());
}

TEST(Meminfo, UsesMemAvailable) {
  auto mem = ParseMeminfo(Fixture("proc/meminfo"));
  ASSERT_TRUE(mem.ok()) << mem.status();
  EXPECT_EQ(mem->total_kb, 16314112u);
  EXPECT_EQ(mem->available_kb, 4078528u);
  EXPECT_NEAR(mem->UsedRatio(), (16314112.0 - 4078528.0) / 16314112.0, 1e-12);
}

TEST(Meminfo, OldKernelFallsBackToFreePlusCaches) {
  auto mem = ParseMeminfo(Fixture("odd/meminfo_no_available"));
  ASSERT_TRUE(mem.ok()) << mem.status();
  EXPECT_EQ(mem->available_kb, 100000u + 50000u + 250000u);
  EXPECT_NEAR(mem->UsedRatio(), 0.6, 1e-12);
}

TEST(Meminfo, RefusesMissingTotal) {
  EXPECT_FALSE(ParseMeminfo(Fixture("odd/meminfo_no_total")).ok());
}

TEST(Loadavg, ParsesFirstFieldAndRefusesGarbage) {
  auto load = ParseLoadavg1(Fixture("proc/loadavg"));
  ASSERT_TRUE(load.ok());
  EXPECT_DOUBLE_EQ(*load, 0.52);
  EXPECT_FALSE(ParseLoadavg1(Fixture("odd/loadavg_garbage")).ok());
}

TEST(Mounts, DecodesEscapesAndKeepsOnlyRealFilesystems) {
  std::vector<MountEntry> mounts = ParseMounts(Fixture("proc/self/mounts"));
  ASSERT_EQ(mounts.size(), 5u);
  EXPECT_EQ(mounts[3].mount_point, "/mnt/my data");
  std::vector<std::string> real;
  for (const MountEntry& m : mounts) {
    if (IsRealFilesystem(m)) real.push_back(m.mount_point);
  }
  EXPECT_EQ(real, (std::vector<std::string>{"/", "/mnt/my data"}));
}

TEST(PidStat, CommandNameWithSpacesAndParentheses) {
  auto stat = ParseProcPidStat(Fixture("proc/4242/stat"));
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->pid, 4242);
  EXPECT_EQ(stat->comm, "my (odd) proc name");
  EXPECT_EQ(stat->state, 'R');
  EXPECT_EQ(stat->utime, 900u);
  EXPECT_EQ(stat->stime, 100u);
  EXPECT_EQ(stat->rss_pages, 50000u);
}

TEST(PidStat, RefusesTruncatedLine) {
  auto stat = ParseProcPidStat(Fixture("odd/pid_stat_truncated"));
  ASSERT_FALSE(stat.ok());
  EXPECT_NE(stat.status().message().find("too few fields"), std::string::npos);
}

TEST(HostCollector, ReadsAFixtureProcTree) {
  HostCollectorOptions options;
  options.proc_root = FixtureDir() + "proc";
  HostCollector collector(options);
  Collection first;
  collector.Collect(absl::Now(), first);
  std::map<std::string, double> values;
  for (const GaugePoint& g : first.gauges) values[g.name] = g.value;
  EXPECT_NEAR(values.at("host_memory_used_ratio"), (16314112.0 - 4078528.0) / 16314112.0, 1e-9);
  EXPECT_DOUBLE_EQ(values.at("host_load1"), 0.52);
  EXPECT_EQ(values.at("host_up"), 1);
  // The fixture's "/" is this machine's real root, measured with statvfs.
  EXPECT_GT(values.count("host_disk_used_ratio"), 0u);
  auto tables = collector.Diagnose(absl::Now(), collector.DiagnosticNames());
  ASSERT_FALSE(tables.empty());
  bool saw_odd_name = false;
  for (const auto& table : tables) {
    for (const auto& row : table.rows()) {
      for (const auto& cell : row.cells())
        saw_odd_name = saw_odd_name || cell == "my (odd) proc name";
    }
  }
  EXPECT_TRUE(saw_odd_name);
}

// A DaemonSet agent: the host's /proc at PROOT and its / at ROOT. Disks come from the host
// init's mount table, measured under ROOT and labelled with the host's paths; the agent's own
// mounts (proc/self/mounts) are not the node's and are not read.
TEST(HostCollector, ReadsTheNodeThroughHostRoots) {
  testing::TempDir dir;
  for (const char* d : {"proc", "proc/1", "proc/self", "proc/4242", "root", "root/vigil-data"}) {
    ASSERT_EQ(mkdir(dir.File(d).c_str(), 0700), 0) << d;
  }
  testing::WriteFile(dir.File("proc/stat"), Fixture("proc/stat"));
  testing::WriteFile(dir.File("proc/meminfo"), Fixture("proc/meminfo"));
  testing::WriteFile(dir.File("proc/loadavg"), "3.25 0.40 0.30 1/100 4242\n");
  testing::WriteFile(dir.File("proc/4242/stat"), Fixture("proc/4242/stat"));
  // The host's mounts: "/", a data disk, a disk whose mount point the agent cannot reach, pseudo
  // filesystems, and a second mount of the root device.
  testing::WriteFile(dir.File("proc/1/mounts"),
                     "/dev/sda1 / ext4 rw,relatime 0 0\n"
                     "/dev/sdb1 /vigil-data xfs rw,relatime 0 0\n"
                     "/dev/sdc1 /vigil-unreachable ext4 rw,relatime 0 0\n"
                     "proc /proc proc rw 0 0\n"
                     "tmpfs /run tmpfs rw 0 0\n"
                     "/dev/sda1 /var/lib/kubelet ext4 rw,relatime 0 0\n");
  testing::WriteFile(dir.File("proc/self/mounts"), "/dev/sdx1 /vigil-agent-only ext4 rw 0 0\n");

  auto made = NewHostCollector(
      YAML::Load(absl::StrCat("{proc_root: '", dir.File("proc"), "', mounts_root: '",
                              dir.File("root"), "/'}")),
      "agent.yaml");
  ASSERT_TRUE(made.ok()) << made.status();
  Collection round;
  (*made)->Collect(absl::Now(), round);
  std::map<std::string, double> values;
  std::set<std::string> disks;
  for (const GaugePoint& g : round.gauges) {
    values[g.name] = g.value;
    if (g.name == "host_disk_used_ratio") {
      for (const auto& [key, value] : g.labels) {
        if (key == "mount") disks.insert(value);
      }
      EXPECT_GE(g.value, 0);
      EXPECT_LE(g.value, 1);
    }
  }
  EXPECT_DOUBLE_EQ(values.at("host_load1"), 3.25);
  EXPECT_NEAR(values.at("host_memory_used_ratio"), (16314112.0 - 4078528.0) / 16314112.0, 1e-9);
  EXPECT_EQ(values.at("host_up"), 1);
  // /vigil-data exists only under the root, so it was measured there.
  EXPECT_EQ(disks, (std::set<std::string>{"/", "/vigil-data"}));

  auto tables = (*made)->Diagnose(absl::Now(), {"top_processes_memory"});
  ASSERT_EQ(tables.size(), 1u);
  bool saw_host_process = false;
  for (const auto& row : tables[0].rows()) {
    for (const auto& cell : row.cells()) saw_host_process |= cell == "my (odd) proc name";
  }
  EXPECT_TRUE(saw_host_process);
}

TEST(HostCollector, RootsMustBeAbsoluteAndKnown) {
  EXPECT_TRUE(NewHostCollector(YAML::Load("{proc_root: /host/proc, mounts_root: /host/root}"),
                               "agent.yaml")
                  .ok());
  auto relative = NewHostCollector(YAML::Load("{mounts_root: host/root}"), "agent.yaml");
  ASSERT_FALSE(relative.ok());
  EXPECT_TRUE(absl::StrContains(relative.status().message(),
                                "collectors.host.mounts_root 'host/root' must be an absolute path"))
      << relative.status();
  auto proc = NewHostCollector(YAML::Load("{proc_root: proc}"), "agent.yaml");
  ASSERT_FALSE(proc.ok());
  EXPECT_TRUE(absl::StrContains(proc.status().message(), "collectors.host.proc_root"))
      << proc.status();
  EXPECT_FALSE(NewHostCollector(YAML::Load("{mount_root: /host/root}"), "agent.yaml").ok());
}

}  // namespace
}  // namespace vigil::agent
