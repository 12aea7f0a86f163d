// A process's CPU time and memory as /proc shows them, for the load generator's reports on the
// controller and on itself. Parsing is pure (canned text in tests); Read* does the file I/O.
// Stateless; thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vigil::loadgen {

struct ProcCpu {
  uint64_t user_ticks = 0;    // utime, field 14 of /proc/PID/stat
  uint64_t system_ticks = 0;  // stime, field 15
  uint64_t total() const { return user_ticks + system_ticks; }
};

struct ProcMemory {
  uint64_t rss_kb = 0;   // VmRSS
  uint64_t peak_kb = 0;  // VmHWM: the highest RSS so far
};

// Parses /proc/PID/stat. The command name (field 2) may hold spaces and parentheses, so fields
// are counted from the last ')'. InvalidArgument naming the field when the text is not one.
absl::StatusOr<ProcCpu> ParseProcStat(absl::string_view text);

// Parses /proc/PID/status for VmRSS and VmHWM (kB). InvalidArgument when VmRSS is missing
// (a zombie or kernel thread has none).
absl::StatusOr<ProcMemory> ParseProcStatus(absl::string_view text);

// Parses /proc/PID/task/TID/schedstat: "RUN_NS WAIT_NS SLICES"; returns WAIT_NS, the time the
// thread was runnable but waiting for a CPU. InvalidArgument when the text is not that.
absl::StatusOr<uint64_t> ParseSchedstatWaitNs(absl::string_view text);

// The same read from /proc/`pid`; NotFound when the process is gone.
absl::StatusOr<ProcCpu> ReadProcCpu(pid_t pid);
absl::StatusOr<ProcMemory> ReadProcMemory(pid_t pid);
// Run-queue wait summed over the process's live threads (threads that ended are not counted).
absl::StatusOr<uint64_t> ReadProcWaitNs(pid_t pid);

// Clock ticks per second (sysconf(_SC_CLK_TCK)).
double TicksPerSecond();

}  // namespace vigil::loadgen
