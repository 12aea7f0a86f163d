#include "bench/loadgen/proc_usage.h"

#include <unistd.h>

#include <dirent.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace vigil::loadgen {
namespace {

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<ProcCpu> ParseProcStat(absl::string_view text) {
  const size_t close = text.rfind(')');
  if (close == absl::string_view::npos) {
    return absl::InvalidArgumentError("/proc stat: no ')' closing the command name");
  }
  // After ") ": field 3 (state) onwards.
  std::vector<absl::string_view> fields =
      absl::StrSplit(text.substr(close + 1), ' ', absl::SkipWhitespace());
  constexpr size_t kUtime = 14 - 3;
  constexpr size_t kStime = 15 - 3;
  if (fields.size() <= kStime) {
    return absl::InvalidArgumentError(
        absl::StrCat("/proc stat: ", fields.size() + 2, " fields, utime and stime need 15"));
  }
  ProcCpu cpu;
  if (!absl::SimpleAtoi(fields[kUtime], &cpu.user_ticks)) {
    return absl::InvalidArgumentError("/proc stat: utime (field 14) is not a number");
  }
  if (!absl::SimpleAtoi(fields[kStime], &cpu.system_ticks)) {
    return absl::InvalidArgumentError("/proc stat: stime (field 15) is not a number");
  }
  return cpu;
}

absl::StatusOr<ProcMemory> ParseProcStatus(absl::string_view text) {
  ProcMemory memory;
  bool have_rss = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    uint64_t* out = nullptr;
    if (absl::ConsumePrefix(&line, "VmRSS:")) {
      out = &memory.rss_kb;
      have_rss = true;
    } else if (absl::ConsumePrefix(&line, "VmHWM:")) {
      out = &memory.peak_kb;
    } else {
      continue;
    }
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, "kB");
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), out)) {
      return absl::InvalidArgumentError(
          absl::StrCat("/proc status: ", out == &memory.rss_kb ? "VmRSS" : "VmHWM",
                       " is not a number of kB"));
    }
  }
  if (!have_rss) {
    return absl::InvalidArgumentError("/proc status: no VmRSS line");
  }
  return memory;
}

absl::StatusOr<uint64_t> ParseSchedstatWaitNs(absl::string_view text) {
  std::vector<absl::string_view> fields = absl::StrSplit(text, ' ', absl::SkipWhitespace());
  uint64_t run = 0, wait = 0;
  if (fields.size() < 3 || !absl::SimpleAtoi(fields[0], &run) ||
      !absl::SimpleAtoi(fields[1], &wait)) {
    return absl::InvalidArgumentError("schedstat: not 'RUN_NS WAIT_NS SLICES'");
  }
  return wait;
}

absl::StatusOr<uint64_t> ReadProcWaitNs(pid_t pid) {
  const std::string tasks = absl::StrCat("/proc/", pid, "/task");
  DIR* dir = opendir(tasks.c_str());
  if (dir == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot list ", tasks));
  }
  uint64_t total = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') {
      continue;
    }
    absl::StatusOr<std::string> text = ReadAll(absl::StrCat(tasks, "/", entry->d_name, "/schedstat"));
    if (!text.ok()) {
      continue;  // the thread ended meanwhile
    }
    if (absl::StatusOr<uint64_t> wait = ParseSchedstatWaitNs(*text); wait.ok()) {
      total += *wait;
    }
  }
  closedir(dir);
  return total;
}

absl::StatusOr<ProcCpu> ReadProcCpu(pid_t pid) {
  absl::StatusOr<std::string> text = ReadAll(absl::StrCat("/proc/", pid, "/stat"));
  if (!text.ok()) {
    return text.status();
  }
  return ParseProcStat(*text);
}

absl::StatusOr<ProcMemory> ReadProcMemory(pid_t pid) {
  absl::StatusOr<std::string> text = ReadAll(absl::StrCat("/proc/", pid, "/status"));
  if (!text.ok()) {
    return text.status();
  }
  return ParseProcStatus(*text);
}

double TicksPerSecond() { return static_cast<double>(sysconf(_SC_CLK_TCK)); }

}  // namespace vigil::loadgen
