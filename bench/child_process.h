// Starting the real binaries a benchmark measures: their output to a log file, and tied to the
// benchmark's life so a killed benchmark leaves no controller behind. Bench code only.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace vigil::bench {

// Runs `argv` (argv[0] a path) with stdout and stderr appended to `log`; returns the pid, or -1
// when fork fails. The child gets SIGKILL when the benchmark dies.
pid_t SpawnLogged(const std::vector<std::string>& argv, const std::string& log);

}  // namespace vigil::bench
