// The host collector's runbook details: the unit owning a process (cgroup v1/v2, supervisor),
// /proc/meminfo in full and the swap gauge, and disk_usage_top's bounded walk — on fake /proc
// trees and real temporary folders.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/agent_config.h"
#include "agent/collectors/disk_usage.h"
#include "agent/collectors/host_collector.h"
#include "agent/collectors/postgres_collector.h"
#include "agent/collectors/proc_parsers.h"
#include "tests/support/process.h"

namespace vigil::agent {
namespace {

TEST(SystemdUnitFromCgroup, V2ServicesNestedAndTemplates) {
  EXPECT_EQ(SystemdUnitFromCgroup("0::/system.slice/nginx.service\n"), "nginx.service");
  // A unit's own sub-cgroups (delegation, e.g. a worker group) belong to the unit.
  EXPECT_EQ(SystemdUnitFromCgroup("0::/system.slice/azalscore.service/workers/w1\n"),
            "azalscore.service");
  EXPECT_EQ(
      SystemdUnitFromCgroup("0::/system.slice/system-azalscore.slice/azalscore@worker1.service"),
      "azalscore@worker1.service");
  EXPECT_EQ(SystemdUnitFromCgroup("0::/system.slice/system-getty.slice/getty@tty1.service\n"),
            "getty@tty1.service");
  EXPECT_EQ(SystemdUnitFromCgroup("0::/app.slice/api.service\n"), "api.service");
}

TEST(SystemdUnitFromCgroup, NothingRestartable) {
  EXPECT_EQ(SystemdUnitFromCgroup("0::/\n"), "");
  EXPECT_EQ(SystemdUnitFromCgroup("0::/init.scope\n"), "");
  EXPECT_EQ(SystemdUnitFromCgroup("0::/user.slice/user-1000.slice/session-3.scope\n"), "");
  EXPECT_EQ(SystemdUnitFromCgroup(
                "0::/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service\n"),
            "")
      << "a user manager's unit is not a system unit";
  EXPECT_EQ(SystemdUnitFromCgroup("0::/system.slice/docker-0123abcd.scope\n"), "");
  EXPECT_EQ(SystemdUnitFromCgroup("0::/kubepods.slice/kubepods-burstable.slice/x.service\n"), "");
  EXPECT_EQ(SystemdUnitFromCgroup("0::/system.slice\n"), "");
  EXPECT_EQ(SystemdUnitFromCgroup(""), "");
  EXPECT_EQ(SystemdUnitFromCgroup("garbage without colons\n"), "");
  EXPECT_EQ(SystemdUnitFromCgroup("0::/.service\n"), "") << "no name before the suffix";
  EXPECT_EQ(SystemdUnitFromCgroup("0::/system.slice/a b.service\n"), "");
}

TEST(SystemdUnitFromCgroup, V1PrefersTheSystemdHierarchy) {
  const char* v1 =
      "12:pids:/system.slice/other.service\n"
      "11:memory:/system.slice/other.service\n"
      "3:cpu,cpuacct:/\n"
      "1:name=systemd:/system.slice/postgresql@15-main.service\n"
      "0::/system.slice/postgresql@15-main.service\n";
  EXPECT_EQ(SystemdUnitFromCgroup(v1), "postgresql@15-main.service");
  // Hybrid without name=systemd: the unified line wins over a controller's.
  EXPECT_EQ(SystemdUnitFromCgroup("4:memory:/system.slice/m.service\n0::/system.slice/u.service\n"),
            "u.service");
  // Only controllers: the first one still says something.
  EXPECT_EQ(SystemdUnitFromCgroup("4:memory:/system.slice/m.service\n"), "m.service");
}

TEST(SupervisorProgramFromEnviron, NameAndGroup) {
  using namespace std::string_literals;
  EXPECT_EQ(
      SupervisorProgramFromEnviron(
          "PATH=/bin\0SUPERVISOR_ENABLED=1\0SUPERVISOR_PROCESS_NAME=api\0SUPERVISOR_GROUP_NAME=api\0"s),
      "api");
  EXPECT_EQ(SupervisorProgramFromEnviron(
                "SUPERVISOR_GROUP_NAME=workers\0SUPERVISOR_PROCESS_NAME=worker_01\0"s),
            "workers:worker_01");
  EXPECT_EQ(SupervisorProgramFromEnviron("SUPERVISOR_PROCESS_NAME=solo"s), "solo");
  EXPECT_EQ(SupervisorProgramFromEnviron("PATH=/bin\0HOME=/\0"s), "");
  EXPECT_EQ(SupervisorProgramFromEnviron("SUPERVISOR_PROCESS_NAME=\0"s), "");
  EXPECT_EQ(SupervisorProgramFromEnviron("SUPERVISOR_PROCESS_NAME=a b\0"s), "");
  EXPECT_EQ(SupervisorProgramFromEnviron("SUPERVISOR_PROCESS_NAME=x\0SUPERVISOR_GROUP_NAME=g:h\0"s),
            "");
}

constexpr char kMeminfo[] =
    "MemTotal:       16314112 kB\n"
    "MemFree:         1203924 kB\n"
    "MemAvailable:    4078528 kB\n"
    "Buffers:          312044 kB\n"
    "Cached:          2894300 kB\n"
    "SwapCached:         1024 kB\n"
    "SwapTotal:       2097148 kB\n"
    "SwapFree:         524288 kB\n"
    "Dirty:              1234 kB\n"
    "Slab:             456789 kB\n"
    "HugePages_Total:       0\n"
    "Hugepagesize:       2048 kB\n"
    "weird line\n"
    "Bad:             x kB\n";

TEST(MeminfoFields, EveryFieldInOrderWithUnits) {
  std::vector<MeminfoField> f = ParseMeminfoFields(kMeminfo);
  ASSERT_EQ(f.size(), 12u);
  EXPECT_EQ(f[0].name, "MemTotal");
  EXPECT_EQ(f[0].value, 16314112u);
  EXPECT_TRUE(f[0].kb);
  EXPECT_EQ(f[10].name, "HugePages_Total");
  EXPECT_FALSE(f[10].kb);
  auto mem = ParseMeminfo(kMeminfo);
  ASSERT_TRUE(mem.ok());
  EXPECT_NEAR(mem->SwapUsedRatio(), (2097148.0 - 524288.0) / 2097148.0, 1e-12);
  EXPECT_EQ(ParseMeminfo("MemTotal: 100 kB\nMemAvailable: 50 kB\n")->SwapUsedRatio(), 0);
  std::string many;
  for (int i = 0; i < 1000; ++i) absl::StrAppend(&many, "F", i, ": 1 kB\n");
  EXPECT_EQ(ParseMeminfoFields(many).size(), kMaxMeminfoFields);
}

// A fake /proc: two processes, one in a systemd service, one run by supervisor.
class FakeProcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* d : {"proc", "proc/100", "proc/200", "proc/300", "proc/self"}) {
      ASSERT_EQ(mkdir(dir_.File(d).c_str(), 0700), 0) << d;
    }
    testing::WriteFile(dir_.File("proc/stat"), "cpu  100 0 100 1000 0 0 0 0\n");
    testing::WriteFile(dir_.File("proc/meminfo"), kMeminfo);
    testing::WriteFile(dir_.File("proc/loadavg"), "0.50 0.40 0.30 1/100 300\n");
    testing::WriteFile(dir_.File("proc/self/mounts"), "");
    auto stat = [](int pid, const char* comm, int rss_pages) {
      return absl::StrCat(pid, " (", comm, ") S 1 1 1 0 -1 0 0 0 0 0 10 5 0 0 20 0 1 0 1 1000 ",
                          rss_pages, " 0\n");
    };
    testing::WriteFile(dir_.File("proc/100/stat"), stat(100, "nginx", 5000));
    testing::WriteFile(dir_.File("proc/100/cgroup"), "0::/system.slice/nginx.service\n");
    testing::WriteFile(dir_.File("proc/200/stat"), stat(200, "gunicorn", 90000));
    testing::WriteFile(dir_.File("proc/200/cgroup"), "0::/system.slice/supervisor.service\n");
    testing::WriteFile(dir_.File("proc/200/environ"),
                       std::string("SUPERVISOR_PROCESS_NAME=api\0SUPERVISOR_GROUP_NAME=api\0", 54));
    testing::WriteFile(dir_.File("proc/300/stat"), stat(300, "bash", 100));  // no cgroup file
  }
  std::map<std::string, std::string> UnitsOf(const std::string& yaml) {
    auto made = NewHostCollector(
        YAML::Load(absl::StrCat("{proc_root: '", dir_.File("proc"), "', ", yaml, "}")),
        "agent.yaml");
    EXPECT_TRUE(made.ok()) << made.status();
    Collection c;
    (*made)->Collect(absl::Now(), c);
    auto tables = (*made)->Diagnose(absl::Now(), {"top_processes_memory"});
    EXPECT_EQ(tables.size(), 1u);
    std::map<std::string, std::string> units;
    EXPECT_EQ(tables[0].columns(5), "unit");
    for (const auto& row : tables[0].rows()) units[row.cells(1)] = row.cells(5);
    return units;
  }
  testing::TempDir dir_;
};

TEST_F(FakeProcTest, TopProcessesNameTheirSystemdUnit) {
  auto units = UnitsOf("top_processes: 5");
  EXPECT_EQ(units["nginx"], "nginx.service");
  EXPECT_EQ(units["gunicorn"], "supervisor.service");
  EXPECT_EQ(units["bash"], "") << "no cgroup file: unknown, not an error";
}

TEST_F(FakeProcTest, SupervisorUnitsComeFromTheEnvironment) {
  auto units = UnitsOf("unit_source: supervisor");
  EXPECT_EQ(units["gunicorn"], "api");
  EXPECT_EQ(units["nginx"], "") << "not run by supervisor: nothing supervisorctl could restart";
  units = UnitsOf("unit_source: none");
  EXPECT_EQ(units["nginx"], "");
}

// An agent whose restarts go through supervisorctl names supervisor programs next to its top
// processes without being told twice; its host collector's own unit_source still wins.
TEST_F(FakeProcTest, ASupervisorServiceManagerMakesUnitsSupervisorPrograms) {
  CollectorRegistry registry;
  RegisterBuiltinCollectors(registry);
  auto unit_of_gunicorn = [&](const std::string& host_options, const std::string& manager) {
    auto config = ParseAgentConfig(
        absl::StrCat("id: web-1\nservice_manager: ", manager, "\ncollectors:\n  host: ",
                     host_options.empty() ? std::string("{proc_root: '") + dir_.File("proc") + "'}"
                                          : host_options,
                     "\n"),
        "agent.yaml", registry);
    EXPECT_TRUE(config.ok()) << config.status();
    if (!config.ok()) return std::string("(no config)");
    Collector& host = *config->collectors[0];
    Collection c;
    host.Collect(absl::Now(), c);
    const std::vector<v1::DiagnosticTable> tables = host.Diagnose(absl::Now(), {"top_processes_memory"});
    EXPECT_EQ(tables.size(), 1u);
    if (tables.empty()) return std::string("(no table)");
    for (const auto& row : tables[0].rows()) {
      if (row.cells(1) == "gunicorn") return row.cells(5);
    }
    return std::string("(no gunicorn row)");
  };
  EXPECT_EQ(unit_of_gunicorn("", "{restart: \"supervisorctl restart {unit}\"}"), "api");
  EXPECT_EQ(unit_of_gunicorn("", "{restart: [/usr/bin/supervisorctl, restart, \"{unit}\"]}"), "api");
  EXPECT_EQ(unit_of_gunicorn("", "systemd"), "supervisor.service");
  EXPECT_EQ(unit_of_gunicorn(absl::StrCat("{proc_root: '", dir_.File("proc"), "', unit_source: none}"),
                             "{restart: \"supervisorctl restart {unit}\"}"),
            "");
}

TEST_F(FakeProcTest, MeminfoTableAndSwapGauge) {
  auto made = NewHostCollector(YAML::Load(absl::StrCat("{proc_root: '", dir_.File("proc"), "'}")),
                               "agent.yaml");
  ASSERT_TRUE(made.ok());
  Collection c;
  (*made)->Collect(absl::Now(), c);
  double swap = -1;
  for (const auto& g : c.gauges) {
    if (g.name == "host_swap_used_ratio") swap = g.value;
  }
  EXPECT_NEAR(swap, 0.75, 1e-3);
  auto tables = (*made)->Diagnose(absl::Now(), {"meminfo"});
  ASSERT_EQ(tables.size(), 1u);
  ASSERT_EQ(tables[0].rows_size(), 12);
  EXPECT_EQ(tables[0].rows(2).cells(0), "MemAvailable");
  EXPECT_EQ(tables[0].rows(2).cells(1), "4078528");
  EXPECT_EQ(tables[0].rows(2).cells(3), "3.9G");
  // A missing meminfo is the table's error, not a crash.
  std::filesystem::remove(dir_.File("proc/meminfo"));
  tables = (*made)->Diagnose(absl::Now(), {"meminfo"});
  ASSERT_EQ(tables.size(), 1u);
  EXPECT_TRUE(absl::StrContains(tables[0].error(), "meminfo")) << tables[0].error();
}

void WriteBytes(const std::string& path, size_t n) { std::ofstream(path) << std::string(n, 'x'); }

TEST(DiskUsage, BiggestEntriesFirstLikeDu) {
  testing::TempDir dir;
  const std::string log = dir.File("log");
  for (const char* d : {"log", "log/nginx", "log/app", "log/app/old", "elsewhere"}) {
    ASSERT_EQ(mkdir(dir.File(d).c_str(), 0700), 0);
  }
  WriteBytes(log + "/nginx/access.log", 1 << 20);
  WriteBytes(log + "/nginx/error.log", 4096);
  WriteBytes(log + "/app/old/app.log.1", 3 << 20);
  WriteBytes(log + "/syslog", 64 << 10);
  WriteBytes(dir.File("elsewhere/huge"), 8 << 20);
  // A symlink to a big folder is not followed; a hard link is counted once.
  ASSERT_EQ(symlink(dir.File("elsewhere").c_str(), (log + "/link").c_str()), 0);
  ASSERT_EQ(link((log + "/app/old/app.log.1").c_str(), (log + "/app/hard").c_str()), 0);
  auto usage = MeasureDiskUsage(log, DiskUsageLimits{});
  ASSERT_TRUE(usage.ok()) << usage.status();
  ASSERT_EQ(usage->entries.size(), 4u);
  EXPECT_EQ(usage->entries[0].name, "app");
  EXPECT_TRUE(usage->entries[0].directory);
  EXPECT_GE(usage->entries[0].bytes, uint64_t{3} << 20);
  EXPECT_LT(usage->entries[0].bytes, uint64_t{4} << 20) << "the hard link counted once";
  EXPECT_EQ(usage->entries[1].name, "nginx");
  EXPECT_EQ(usage->entries[2].name, "syslog");
  EXPECT_EQ(usage->entries[3].name, "link");
  EXPECT_LT(usage->entries[3].bytes, 8192u) << "the symlink itself, not its 8 MiB target";
  EXPECT_FALSE(usage->cut);
  EXPECT_EQ(usage->visited, 9u);
  EXPECT_FALSE(MeasureDiskUsage(dir.File("missing"), {}).ok());
}

TEST(DiskUsage, EntryBoundCutsTheWalkAndSaysSo) {
  testing::TempDir dir;
  ASSERT_EQ(mkdir(dir.File("many").c_str(), 0700), 0);
  for (int i = 0; i < 300; ++i) WriteBytes(dir.File(absl::StrCat("many/f", i)), 10);
  DiskUsageLimits limits;
  limits.max_entries = 50;
  auto usage = MeasureDiskUsage(dir.path(), limits);
  ASSERT_TRUE(usage.ok());
  EXPECT_TRUE(usage->cut);
  EXPECT_EQ(usage->cut_why, "50 entries");
  EXPECT_EQ(usage->visited, 50u);
}

TEST(DiskUsage, HumanSizes) {
  EXPECT_EQ(HumanBytes(0), "0");
  EXPECT_EQ(HumanBytes(1023), "1023");
  EXPECT_EQ(HumanBytes(1536), "1.5K");
  EXPECT_EQ(HumanBytes(uint64_t{300} << 20), "300M");
  EXPECT_EQ(HumanBytes(uint64_t{5} << 40), "5.0T");
}

TEST(HostCollector, DiskUsageTopThroughTheMountsRootWithACutRow) {
  testing::TempDir dir;
  for (const char* d : {"proc", "proc/self", "root", "root/var", "root/var/log", "root/var/log/big",
                        "root/var/backups"}) {
    ASSERT_EQ(mkdir(dir.File(d).c_str(), 0700), 0) << d;
  }
  testing::WriteFile(dir.File("proc/stat"), "cpu  1 0 1 10 0 0 0 0\n");
  testing::WriteFile(dir.File("proc/meminfo"), kMeminfo);
  WriteBytes(dir.File("root/var/log/big/a"), 2 << 20);
  WriteBytes(dir.File("root/var/log/small"), 100);
  for (int i = 0; i < 40; ++i) WriteBytes(dir.File(absl::StrCat("root/var/backups/db", i)), 10);
  auto made =
      NewHostCollector(YAML::Load(absl::StrCat(
                           "{proc_root: '", dir.File("proc"), "', mounts_root: '", dir.File("root"),
                           "', disk_usage_dirs: [/var/log, /var/backups, "
                           "/var/missing], disk_usage_top: 1, disk_usage_max_entries: 20}")),
                       "agent.yaml");
  ASSERT_TRUE(made.ok()) << made.status();
  auto names = (*made)->DiagnosticNames();
  EXPECT_NE(std::find(names.begin(), names.end(), "disk_usage_top"), names.end());
  auto tables = (*made)->Diagnose(absl::Now(), {"disk_usage_top"});
  ASSERT_EQ(tables.size(), 1u);
  const auto& t = tables[0];
  ASSERT_EQ(t.rows_size(), 4) << t.DebugString();
  EXPECT_EQ(t.rows(0).cells(0), "/var/log/big/") << "the host's path, not the mounts root's";
  EXPECT_EQ(t.rows(1).cells(0), "/var/log");
  EXPECT_EQ(t.rows(1).cells(4), "total");
  EXPECT_EQ(t.rows(3).cells(0), "/var/backups");
  EXPECT_TRUE(absl::StrContains(t.rows(3).cells(4), "cut short at 20 entries"))
      << t.rows(3).cells(4);
  EXPECT_TRUE(absl::StrContains(t.error(), "/var/missing")) << t.error();
}

TEST(HostCollector, DetailOptionsAreChecked) {
  auto make = [](const std::string& yaml) {
    return NewHostCollector(YAML::Load(yaml), "agent.yaml");
  };
  EXPECT_TRUE(make("{unit_source: supervisor, disk_usage_dirs: [/var/log], "
                   "disk_usage_max_time: 500ms}")
                  .ok());
  auto source = make("{unit_source: runit}");
  ASSERT_FALSE(source.ok());
  EXPECT_TRUE(absl::StrContains(source.status().message(), "collectors.host.unit_source"));
  EXPECT_FALSE(make("{disk_usage_dirs: [var/log]}").ok());
  EXPECT_FALSE(make("{disk_usage_max_time: 5m}").ok());
  EXPECT_FALSE(make("{disk_usage_max_entries: 0}").ok());
}

TEST(PgStateCounts, KnownStatesWithZerosAndUnknown) {
  auto c = ParsePgStateCounts(
      "active=3,idle=10,idle in transaction=2,idle in transaction (aborted)=1,weird=4,bad");
  EXPECT_EQ(c.size(), std::size(kPgConnectionStates));
  EXPECT_EQ(c["active"], 3);
  EXPECT_EQ(c["idle"], 10);
  EXPECT_EQ(c["idle in transaction"], 2);
  EXPECT_EQ(c["idle in transaction (aborted)"], 1);
  EXPECT_EQ(c["fastpath function call"], 0);
  EXPECT_EQ(c["unknown"], 4);
  EXPECT_EQ(ParsePgStateCounts("")["idle"], 0);
}

}  // namespace
}  // namespace vigil::agent
