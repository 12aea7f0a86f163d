// Fuzzes the parsers of the /proc files the host collector reads (agent/collectors/proc_parsers.h):
// each input is given whole to every parser, as if it were that file: cgroup (the unit of a
// process), environ (its supervisor program), meminfo, stat, loadavg, mounts, PID/stat.
#include <cstddef>
#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "agent/collectors/proc_parsers.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

bool Printable(absl::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vigil::agent;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);

  const std::string unit = SystemdUnitFromCgroup(text);
  if (!unit.empty()) {
    // Something `systemctl restart` can take: one path component, a service, printable.
    FUZZ_CHECK(absl::EndsWith(unit, ".service") && unit.size() > 8);
    FUZZ_CHECK(unit.find('/') == std::string::npos);
    FUZZ_CHECK(Printable(unit));
    FUZZ_CHECK(!absl::StartsWith(unit, "user@"));
  }
  const std::string program = SupervisorProgramFromEnviron(text);
  if (!program.empty()) {
    FUZZ_CHECK(Printable(program));
    FUZZ_CHECK(program.size() <= 257);
  }
  const std::vector<MeminfoField> fields = ParseMeminfoFields(text);
  FUZZ_CHECK(fields.size() <= kMaxMeminfoFields);
  for (const MeminfoField& f : fields) {
    FUZZ_CHECK(!f.name.empty() && f.name.size() <= 64);
  }
  if (auto mem = ParseMeminfo(text); mem.ok()) {
    FUZZ_CHECK(mem->total_kb > 0);
    const double used = mem->UsedRatio();
    const double swap = mem->SwapUsedRatio();
    FUZZ_CHECK(used >= 0 && used <= 1);
    FUZZ_CHECK(swap >= 0 && swap <= 1);
  }
  if (auto cpu = ParseProcStat(text); cpu.ok()) {
    const double r = CpuUsageRatio(CpuTimes{}, *cpu);
    FUZZ_CHECK(r >= 0 && r <= 1);
  }
  (void)ParseLoadavg1(text);
  for (const MountEntry& m : ParseMounts(text)) {
    (void)IsRealFilesystem(m);
  }
  (void)ParseProcPidStat(text);
  return 0;
}
