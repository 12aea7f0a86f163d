#include "agent/collectors/proc_parsers.h"

#include <algorithm>

#include "absl/strings/numbers.h"
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
  uint64_t total = 0, available = 0, free = 0, buffers = 0, cached = 0;
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
    }
  }
  if (!has_total || total == 0) {
    return absl::InvalidArgumentError("/proc/meminfo: no MemTotal");
  }
  if (!has_available) {
    available = free + buffers + cached;
  }
  return MemInfo{total, available};
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
