#include "agent/collectors/proc_parsers.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace vigil::agent {
namespace {

std::vector<absl::string_view> Fields(absl::string_view line) {
  return absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
}

}  // namespace

absl::StatusOr<CpuTimes> ParseProcStat(absl::string_view text) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::vector<absl::string_view> f = Fields(line);
    if (f.empty() || f[0] != "cpu") {
      continue;
    }
    // user nice system idle [iowait irq softirq steal ...]: old kernels have only four.
    if (f.size() < 5) {
      return absl::InvalidArgumentError("/proc/stat: cpu line has too few fields");
    }
    uint64_t v[8] = {};
    for (size_t i = 1; i < f.size() && i <= 8; ++i) {
      if (!absl::SimpleAtoi(f[i], &v[i - 1])) {
        return absl::InvalidArgumentError(absl::StrCat("/proc/stat: bad cpu field '", f[i], "'"));
      }
    }
    return CpuTimes{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
  }
  return absl::InvalidArgumentError("/proc/stat: no aggregate cpu line");
}

double CpuUsageRatio(const CpuTimes& before, const CpuTimes& after) {
  if (after.Total() <= before.Total() || after.Busy() < before.Busy()) {
    return 0;
  }
  double busy = static_cast<double>(after.Busy() - before.Busy());
  double total = static_cast<double>(after.Total() - before.Total());
  return std::clamp(busy / total, 0.0, 1.0);
}

absl::StatusOr<MemInfo> ParseMeminfo(absl::string_view text) {
  uint64_t total = 0, available = 0, free = 0, buffers = 0, cached = 0, swap_total = 0,
           swap_free = 0;
  bool has_total = false, has_available = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::vector<absl::string_view> f = Fields(line);
    if (f.size() < 2) {
      continue;
    }
    uint64_t value;
    if (!absl::SimpleAtoi(f[1], &value)) {
      continue;
    }
    if (f[0] == "MemTotal:") {
      total = value;
      has_total = true;
    } else if (f[0] == "MemAvailable:") {
      available = value;
      has_available = true;
    } else if (f[0] == "MemFree:") {
      free = value;
    } else if (f[0] == "Buffers:") {
      buffers = value;
    } else if (f[0] == "Cached:") {
      cached = value;
    } else if (f[0] == "SwapTotal:") {
      swap_total = value;
    } else if (f[0] == "SwapFree:") {
      swap_free = value;
    }
  }
  if (!has_total || total == 0) {
    return absl::InvalidArgumentError("/proc/meminfo: no MemTotal");
  }
  if (!has_available) {
    available = free + buffers + cached;
  }
  return MemInfo{total, available, swap_total, swap_free};
}

std::vector<MeminfoField> ParseMeminfoFields(absl::string_view text) {
  std::vector<MeminfoField> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (out.size() >= kMaxMeminfoFields) {
      break;
    }
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos || colon == 0 || colon > 64) {
      continue;
    }
    std::vector<absl::string_view> f = Fields(line.substr(colon + 1));
    MeminfoField field;
    if (f.empty() || f.size() > 2 || !absl::SimpleAtoi(f[0], &field.value)) {
      continue;
    }
    if (f.size() == 2 && f[1] != "kB") {
      continue;
    }
    field.kb = f.size() == 2;
    field.name = std::string(absl::StripAsciiWhitespace(line.substr(0, colon)));
    if (field.name.empty()) {
      continue;
    }
    out.push_back(std::move(field));
  }
  return out;
}

absl::StatusOr<double> ParseLoadavg1(absl::string_view text) {
  std::vector<absl::string_view> f = Fields(absl::StripAsciiWhitespace(text));
  double load;
  if (f.empty() || !absl::SimpleAtod(f[0], &load)) {
    return absl::InvalidArgumentError("/proc/loadavg: no 1-minute load");
  }
  return load;
}

namespace {
std::string DecodeMountField(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      absl::string_view oct = s.substr(i + 1, 3);
      if (oct.size() == 3 &&
          std::all_of(oct.begin(), oct.end(), [](char c) { return c >= '0' && c <= '7'; })) {
        out.push_back(static_cast<char>((oct[0] - '0') * 64 + (oct[1] - '0') * 8 + (oct[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}
}  // namespace

std::vector<MountEntry> ParseMounts(absl::string_view text) {
  std::vector<MountEntry> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::vector<absl::string_view> f = Fields(line);
    if (f.size() < 3) {
      continue;
    }
    out.push_back({DecodeMountField(f[0]), DecodeMountField(f[1]), std::string(f[2])});
  }
  return out;
}

bool IsRealFilesystem(const MountEntry& mount) {
  static constexpr absl::string_view kReal[] = {
      "ext2", "ext3",  "ext4", "xfs",   "btrfs",   "zfs", "f2fs", "jfs",  "reiserfs",
      "vfat", "exfat", "ntfs", "ntfs3", "fuseblk", "nfs", "nfs4", "cifs", "overlay"};
  for (absl::string_view t : kReal) {
    if (mount.fs_type == t) {
      return mount.fs_type != "overlay" || mount.mount_point == "/";
    }
  }
  return false;
}

absl::StatusOr<ProcStat> ParseProcPidStat(absl::string_view text) {
  // "pid (comm) state ..." where comm may contain ") (": the name ends at the LAST ')'.
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == absl::string_view::npos || close == absl::string_view::npos || close < open) {
    return absl::InvalidArgumentError("stat: no (comm)");
  }
  ProcStat st;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text.substr(0, open)), &st.pid)) {
    return absl::InvalidArgumentError("stat: bad pid");
  }
  st.comm = std::string(text.substr(open + 1, close - open - 1));
  std::vector<absl::string_view> f = Fields(text.substr(close + 1));
  // After comm: state(0) ppid(1) ... utime(11) stime(12) ... rss(21).
  if (f.size() < 22) {
    return absl::InvalidArgumentError("stat: too few fields after comm");
  }
  st.state = f[0].empty() ? '?' : f[0][0];
  if (!absl::SimpleAtoi(f[11], &st.utime) || !absl::SimpleAtoi(f[12], &st.stime) ||
      !absl::SimpleAtoi(f[21], &st.rss_pages)) {
    return absl::InvalidArgumentError("stat: bad utime/stime/rss");
  }
  return st;
}

}  // namespace vigil::agent

namespace vigil::agent {

std::string SystemdUnitFromCgroup(absl::string_view text) {
  // v1: "ID:controllers:path", the systemd hierarchy named "name=systemd"; v2: "0::path".
  absl::string_view chosen;
  int rank = 0;  // 3: name=systemd (v1), 2: the v2 line, 1: any other
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const size_t first = line.find(':');
    if (first == absl::string_view::npos) {
      continue;
    }
    const size_t second = line.find(':', first + 1);
    if (second == absl::string_view::npos) {
      continue;
    }
    const absl::string_view controllers = line.substr(first + 1, second - first - 1);
    const absl::string_view path = absl::StripTrailingAsciiWhitespace(line.substr(second + 1));
    const int r = controllers == "name=systemd" ? 3
                  : (line.substr(0, first) == "0" && controllers.empty()) ? 2
                                                                          : 1;
    if (r > rank) {
      rank = r;
      chosen = path;
    }
  }
  std::string unit;
  for (absl::string_view part : absl::StrSplit(chosen, '/', absl::SkipEmpty())) {
    if (absl::StartsWith(part, "user@") && absl::EndsWith(part, ".service")) {
      return "";  // a user's own manager: its units are not system units
    }
    if (absl::EndsWith(part, ".scope") || part == "kubepods.slice" ||
        absl::StartsWith(part, "kubepods")) {
      return "";
    }
    if (absl::EndsWith(part, ".service") && part.size() > 8 && part.size() <= 256) {
      unit = std::string(part);
    }
  }
  // A unit name is printable ASCII (systemd escapes the rest as \xNN).
  for (char c : unit) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return "";
    }
  }
  return unit;
}

std::string SupervisorProgramFromEnviron(absl::string_view environ) {
  absl::string_view name, group;
  bool has_name = false, has_group = false;
  for (absl::string_view var : absl::StrSplit(environ, '\0')) {
    if (absl::ConsumePrefix(&var, "SUPERVISOR_PROCESS_NAME=")) {
      name = var;
      has_name = true;
    } else if (absl::ConsumePrefix(&var, "SUPERVISOR_GROUP_NAME=")) {
      group = var;
      has_group = true;
    }
  }
  if (!has_name || name.empty() || name.size() > 128 || group.size() > 128) {
    return "";
  }
  for (absl::string_view s : {name, group}) {
    for (char c : s) {
      const auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7f || c == ':') {
        return "";
      }
    }
  }
  if (!has_group || group.empty() || group == name) {
    return std::string(name);
  }
  return absl::StrCat(group, ":", name);
}

}  // namespace vigil::agent
